"""kumo.shaping.load (shaping.lua): KumoMTA's shaping files read, merged and looked up by the
shaping domain model, with the MX lookups that give rollup domains their site names.

The merged data stays here, per policy, behind a handle; the Lua side holds the handle. The
MX lookups run when the data loads and again when it is older than REFRESH_SECONDS (KumoMTA
reloads its shaping data every minute), so a lookup that failed is retried.
"""

from __future__ import annotations

import json
import logging
import time
import tomllib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from typing import Any

import dns.exception
import dns.rdatatype
import dns.resolver

from ...domain.mx_plan import (
    MxAnswer,
    MxAnswerKind,
    MxLookupFailed,
    MxRecord,
    plan_for_literal,
    plan_from_mx_answer,
)
from ...domain.routing_target import RoutingTarget, RoutingTargetError
from ...domain.shaping import CheckLevel, Shaping, ShapingError, ShapingFile, SiteLookup
from ..host import HostCallback, HostContext, HostError
from .serde import strip_json_comments

# Where KumoMTA installs its default shaping file; relaystream's own default answers there.
KUMOMTA_DEFAULT_SHAPING = "/opt/kumomta/share/policy-extras/shaping.toml"
REFRESH_SECONDS = 60.0
# One MX lookup may take this long (all run at once): well inside a policy call's deadline.
SITE_LOOKUP_SECONDS = 0.5
_MAX_PARALLEL_LOOKUPS = 16

_OPTION_LEVELS = frozenset(
    {"aliased_site", "dns_fail", "local_load", "null_mx", "provider_overlap", "remote_load"}
)
_OPTIONS = _OPTION_LEVELS | {"skip_remote", "http_timeout"}

policy_log = logging.getLogger("relaystream.policy")


def default_shaping_text() -> str:
    policy_package = (__package__ or "").rpartition(".")[0]
    return resources.files(policy_package).joinpath("extras", "shaping.toml").read_text("utf-8")


def site_lookup(domain: str) -> SiteLookup:
    """The site name KumoMTA gives `domain` (its factored MX host names), from DNS."""
    try:
        target = RoutingTarget.classify(domain)
    except RoutingTargetError as err:
        return SiteLookup(error=str(err))
    if target.is_literal:
        return SiteLookup(plan_for_literal(target).site_name)
    resolver = dns.resolver.Resolver()
    resolver.lifetime = SITE_LOOKUP_SECONDS
    try:
        result = resolver.resolve(target.host, "MX", search=False)
        answer = MxAnswer(
            MxAnswerKind.RECORDS,
            tuple(
                MxRecord(int(rdata.preference), rdata.exchange.to_text())
                for rdata in result
                if rdata.rdtype == dns.rdatatype.MX
            ),
        )
    except dns.resolver.NoAnswer:
        answer = MxAnswer(MxAnswerKind.NODATA)
    except dns.resolver.NXDOMAIN:
        answer = MxAnswer(MxAnswerKind.NXDOMAIN, detail="NXDOMAIN")
    except dns.exception.DNSException as err:
        answer = MxAnswer(MxAnswerKind.SERVFAIL, detail=str(err) or type(err).__name__)
    try:
        plan = plan_from_mx_answer(target, answer)
    except MxLookupFailed as err:
        return SiteLookup(error=err.detail)
    if plan.is_null_mx:
        return SiteLookup(null_mx=True)
    return SiteLookup(plan.site_name)


@dataclass
class _Loaded:
    files: list[ShapingFile]
    levels: dict[str, CheckLevel]
    shaping: Shaping
    loaded_at: float


def _parse_options(value: object) -> dict[str, CheckLevel]:
    levels = {name: CheckLevel.IGNORE for name in _OPTION_LEVELS}
    # KumoMTA ignores an entry whose MX lookup fails without a word; relaystream says so.
    levels.update(local_load=CheckLevel.ERROR, dns_fail=CheckLevel.WARN, null_mx=CheckLevel.WARN)
    if value is None or (isinstance(value, Mapping) and not value):
        return levels
    if not isinstance(value, Mapping):
        raise HostError("kumo.shaping.load: the options must be a table")
    for key, item in value.items():
        if key not in _OPTIONS:
            raise HostError(f"kumo.shaping.load: unknown option {key!r}")
        if key in _OPTION_LEVELS:
            try:
                levels[key] = CheckLevel(item)
            except ValueError as err:
                raise HostError(
                    f"kumo.shaping.load: option {key}: expected Ignore, Warn or Error"
                ) from err
    return levels


def host_callbacks(context: HostContext) -> Mapping[str, HostCallback]:
    loaded: dict[str, _Loaded] = {}  # by the load's arguments (JSON), one per distinct load
    handles: list[_Loaded] = []

    def read_file(name: str, levels: dict[str, CheckLevel], notes: list[str]) -> ShapingFile | None:
        if name.startswith(("http://", "https://")):
            policy_log.warning(
                "kumo.shaping.load: %s: relaystream does not fetch shaping data over HTTP "
                "(TSA daemon); this source is skipped",
                name,
            )
            return None
        try:
            text = (
                default_shaping_text()
                if name == KUMOMTA_DEFAULT_SHAPING
                else context.read_data_file(name)
            )
            data: Any = (
                tomllib.loads(text)
                if name.endswith(".toml")
                else json.loads(strip_json_comments(text))
            )
            return ShapingFile.parse(name, data)
        except (HostError, ShapingError, tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
            level = levels["local_load"]
            text = f"{name}: {err}"
            if level is CheckLevel.ERROR:
                raise HostError(f"kumo.shaping.load: {text}") from err
            if level is CheckLevel.WARN:
                notes.append(text)
            return None

    def merge(files: list[ShapingFile], levels: dict[str, CheckLevel]) -> Shaping:
        domains = sorted({domain for item in files for domain in item.rollup_domains()})
        with ThreadPoolExecutor(max_workers=min(_MAX_PARALLEL_LOOKUPS, len(domains) or 1)) as pool:
            sites = dict(zip(domains, pool.map(site_lookup, domains), strict=True))
        try:
            return Shaping.merge(
                files, sites, dns_fail=levels["dns_fail"], null_mx=levels["null_mx"]
            )
        except ShapingError as err:
            raise HostError(f"kumo.shaping.load: {err}") from err

    def load(json_args: object) -> object:
        if not isinstance(json_args, str):
            raise HostError("kumo.shaping.load: expected a list of file names")
        args = json.loads(json_args)
        names, options = args["files"], args.get("options")
        if names == {}:
            names = []  # Lua's empty table encodes as an empty object
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise HostError("kumo.shaping.load: expected a list of file names")
        known = loaded.get(json_args)
        if known is None:
            levels = _parse_options(options)
            notes: list[str] = []
            files = [item for name in names if (item := read_file(name, levels, notes))]
            shaping = merge(files, levels)
            shaping.warnings[:0] = notes
            known = _Loaded(files, levels, shaping, time.monotonic())
            loaded[json_args] = known
            handles.append(known)
            for entry, count in shaping.automation_rules():
                policy_log.warning(
                    "kumo.shaping.load: shaping entry %r has %d automation rule(s): "
                    "relaystream does not run TSA automation; they have no effect",
                    entry,
                    count,
                )
        return {
            "handle": handles.index(known) + 1,
            "warnings": known.shaping.warnings,
            "errors": known.shaping.errors,
            "hash": known.shaping.hash,
        }

    def current(handle: object) -> _Loaded:
        if not isinstance(handle, int) or not 1 <= handle <= len(handles):
            raise HostError("not a shaping data object")
        known = handles[handle - 1]
        if time.monotonic() - known.loaded_at > REFRESH_SECONDS:
            known.loaded_at = time.monotonic()
            known.shaping = merge(known.files, known.levels)
        return known

    def get_egress_path_config(
        handle: object, domain: object, source: object, site: object
    ) -> object:
        if not all(isinstance(item, str) for item in (domain, source, site)):
            raise HostError(
                "get_egress_path_config: expected (domain, egress_source, site_name) strings"
            )
        return current(handle).shaping.get_egress_path_config(str(domain), str(source), str(site))

    def warn(location: object, text: object) -> None:
        policy_log.warning("%s%s", location, text)

    return {
        "shaping_load": load,
        "shaping_get_egress_path_config": get_egress_path_config,
        "shaping_referenced_sources": lambda handle: current(handle).shaping.referenced_sources(),
        "shaping_warn": warn,
    }
