"""Traffic shaping data in KumoMTA's format (shaping.toml / shaping.json, the data behind
`policy-extras.shaping` and `kumo.shaping.load`), merged and looked up as KumoMTA does.

A file is a table of entries: `default` (applies everywhere), and one per domain. An entry
holds egress path fields, plus:
- `mx_rollup` (default true): the entry applies to the domain's *site* (the name KumoMTA
  derives from its MX hosts), so every domain hosted there shares it; false: to the domain
  alone;
- `replace_base` (default false): when merged over an earlier entry of the same key, replace
  it instead of merging field by field;
- `sources`: a table of egress source name -> egress path fields for that source only;
- `automation`: TSA rules (kept, reported; relaystream does not run TSA).

Entries of later files merge over earlier ones. The lookup for (domain, source, site)
merges, in order: `default`, the site's entry, the domain's entry, the site's entry for the
source, the domain's entry for the source. Merging replaces fields, except the tables
`additional_connection_limits`, `additional_message_rate_throttles` and
`additional_source_selection_rates`, which merge name by name.

Site names come from the caller (`site_names`): this module does no DNS.
"""

from __future__ import annotations

import copy
import enum
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .egress import EgressPathConfig
from .egress_values import EgressConfigError

DEFAULT_ENTRY = "default"
_ENTRY_KEYS = frozenset({"mx_rollup", "replace_base", "automation", "sources"})
_MERGEABLE_TABLES = frozenset(
    {
        "additional_connection_limits",
        "additional_message_rate_throttles",
        "additional_source_selection_rates",
    }
)


class ShapingError(ValueError):
    """Shaping data that cannot be used: not tables, or fields that make no egress path."""


class CheckLevel(enum.Enum):
    """How a problem found while merging is treated (KumoMTA's validation options)."""

    IGNORE = "Ignore"
    WARN = "Warn"
    ERROR = "Error"


@dataclass
class ShapingEntry:
    """One entry (KumoMTA's PartialEntry): egress path fields and how they merge."""

    params: dict[str, Any] = field(default_factory=dict)
    mx_rollup: bool = True
    replace_base: bool = False
    automation: list[Any] = field(default_factory=list)
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)

    def merge_from(self, other: ShapingEntry) -> None:
        if other.replace_base:
            self.params = copy.deepcopy(other.params)
            self.automation = copy.deepcopy(other.automation)
            self.sources = copy.deepcopy(other.sources)
            return
        merge_params(self.params, other.params)
        for source, params in other.sources.items():
            merge_params(self.sources.setdefault(source, {}), params)
        self.automation.extend(copy.deepcopy(other.automation))


def merge_params(target: dict[str, Any], source: Mapping[str, Any]) -> None:
    """`source`'s fields over `target`'s; the additional_* tables merge name by name."""
    for key, value in source.items():
        existing = target.get(key)
        if key in _MERGEABLE_TABLES and isinstance(existing, dict) and isinstance(value, dict):
            existing.update(copy.deepcopy(value))
        else:
            target[key] = copy.deepcopy(value)


def parse_entry(value: object, where: str) -> ShapingEntry:
    if not isinstance(value, Mapping):
        raise ShapingError(f"{where}: expected a table of egress path fields, got {value!r}")
    entry = ShapingEntry()
    for key, item in value.items():
        if key in ("mx_rollup", "replace_base"):
            if not isinstance(item, bool):
                raise ShapingError(f"{where}: {key} must be true or false, got {item!r}")
            setattr(entry, key, item)
        elif key == "automation":
            if not isinstance(item, list) or not all(isinstance(rule, Mapping) for rule in item):
                raise ShapingError(f"{where}: automation must be a list of rule tables")
            entry.automation = copy.deepcopy(item)
        elif key == "sources":
            if not isinstance(item, Mapping) or not all(
                isinstance(params, Mapping) for params in item.values()
            ):
                raise ShapingError(f"{where}: sources must be a table of source name -> fields")
            entry.sources = {str(name): dict(params) for name, params in item.items()}
        else:
            entry.params[str(key)] = copy.deepcopy(item)
    return entry


@dataclass
class ShapingFile:
    """One parsed file: its `default` entry and its domain entries, in file order."""

    name: str
    default: ShapingEntry | None = None
    domains: dict[str, ShapingEntry] = field(default_factory=dict)

    @classmethod
    def parse(cls, name: str, data: object) -> ShapingFile:
        if not isinstance(data, Mapping):
            raise ShapingError(f"{name}: expected a table of entries")
        parsed = cls(name)
        for key, value in data.items():
            if key == "provider":
                raise ShapingError(
                    f"{name}: [provider] entries are not supported by relaystream yet; "
                    "write per-domain (mx_rollup) entries instead"
                )
            entry = parse_entry(value, f"{name}: {key}")
            if key == DEFAULT_ENTRY:
                parsed.default = entry
            else:
                parsed.domains[str(key)] = entry
        return parsed

    def rollup_domains(self) -> list[str]:
        return [domain for domain, entry in self.domains.items() if entry.mx_rollup]


@dataclass(frozen=True)
class SiteLookup:
    """What the caller found for a rollup domain: its site name, or why there is none
    (`site_name` "" with `error` set; a null MX has neither hosts nor site)."""

    site_name: str = ""
    error: str = ""
    null_mx: bool = False


@dataclass
class Shaping:
    """Merged shaping data (KumoMTA's `kumo.shaping.load` result)."""

    by_site: dict[str, ShapingEntry] = field(default_factory=dict)
    by_domain: dict[str, ShapingEntry] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    hash: str = ""

    @classmethod
    def merge(
        cls,
        files: Sequence[ShapingFile],
        site_names: Mapping[str, SiteLookup],
        *,
        dns_fail: CheckLevel = CheckLevel.IGNORE,
        null_mx: CheckLevel = CheckLevel.IGNORE,
    ) -> Shaping:
        """Merges `files` in order. A rollup entry goes to its domain's site from
        `site_names`; one whose site is unknown is left out (reported at `dns_fail` /
        `null_mx`). Raises ShapingError when a merged entry is not a valid egress path."""
        shaping = cls()
        for shaping_file in files:
            if shaping_file.default is not None:
                shaping._merge_into(shaping.by_domain, DEFAULT_ENTRY, shaping_file.default)
            for domain, entry in shaping_file.domains.items():
                if "." not in domain.strip("."):
                    shaping.warnings.append(
                        f"{shaping_file.name}: entry '{domain}' is a single DNS label; quote "
                        f'domain names in TOML section names (["{domain}.com"]), or the dots '
                        "make nested tables"
                    )
                if not entry.mx_rollup:
                    shaping._merge_into(shaping.by_domain, domain, entry)
                    continue
                lookup = site_names.get(domain, SiteLookup(error="not looked up"))
                if lookup.site_name:
                    shaping._merge_into(shaping.by_site, lookup.site_name, entry)
                elif lookup.null_mx:
                    shaping._report(
                        null_mx,
                        f"domain {domain} has a null MX and cannot be used with "
                        "mx_rollup = true; its shaping entry is ignored",
                    )
                else:
                    shaping._report(
                        dns_fail,
                        f"MX lookup for {domain} failed ({lookup.error}); its shaping entry "
                        "is ignored",
                    )
        for kind, entries in (("site", shaping.by_site), ("domain", shaping.by_domain)):
            for key, entry in entries.items():
                _check_entry(f"{kind} {key}", entry)
        shaping.hash = hashlib.sha256(
            json.dumps(
                [_entries_json(shaping.by_site), _entries_json(shaping.by_domain)],
                sort_keys=True,
                default=str,
            ).encode()
        ).hexdigest()
        return shaping

    def _merge_into(self, entries: dict[str, ShapingEntry], key: str, entry: ShapingEntry) -> None:
        existing = entries.get(key)
        if existing is None:
            entries[key] = copy.deepcopy(entry)
        else:
            existing.merge_from(entry)

    def _report(self, level: CheckLevel, text: str) -> None:
        if level is CheckLevel.ERROR:
            self.errors.append(text)
        elif level is CheckLevel.WARN:
            self.warnings.append(text)

    def get_egress_path_config(
        self, domain: str, egress_source: str, site_name: str
    ) -> dict[str, Any]:
        """The merged egress path fields for mail to `domain` at `site_name` from
        `egress_source` (not yet checked: kumo.make_egress_path checks them)."""
        merged = ShapingEntry()
        default = self.by_domain.get(DEFAULT_ENTRY)
        if default is not None:
            merged.merge_from(default)
        by_site = self.by_site.get(site_name)
        by_domain = self.by_domain.get(domain) if domain != DEFAULT_ENTRY else None
        for entry in (by_site, by_domain):
            if entry is not None:
                merged.merge_from(entry)
        for entry in (by_site, by_domain):
            if entry is not None and egress_source in entry.sources:
                merge_params(merged.params, entry.sources[egress_source])
        return merged.params

    def automation_rules(self) -> list[tuple[str, int]]:
        """(entry, number of TSA rules) for each entry that has some."""
        return [
            (key, len(entry.automation))
            for entries in (self.by_domain, self.by_site)
            for key, entry in entries.items()
            if entry.automation
        ]

    def referenced_sources(self) -> dict[str, list[str]]:
        """Source name -> the entries that configure it (`domain:x` / `site:y`)."""
        found: dict[str, list[str]] = {}
        for kind, entries in (("domain", self.by_domain), ("site", self.by_site)):
            for key, entry in entries.items():
                for source in entry.sources:
                    found.setdefault(source, []).append(f"{kind}:{key}")
        return found


def _check_entry(where: str, entry: ShapingEntry) -> None:
    try:
        EgressPathConfig.from_mapping(entry.params)
        for source, params in entry.sources.items():
            try:
                EgressPathConfig.from_mapping(params)
            except EgressConfigError as err:
                raise EgressConfigError(f"source {source}: {err}") from err
    except EgressConfigError as err:
        raise ShapingError(f"{where}: {err}") from err


def _entries_json(entries: Mapping[str, ShapingEntry]) -> dict[str, Any]:
    return {
        key: [entry.params, entry.sources, entry.automation, entry.mx_rollup]
        for key, entry in entries.items()
    }
