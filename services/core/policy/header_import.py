"""`msg:import_headers(SPECS)`: header values into meta by name or `Prefix-*` pattern, with
KumoMTA's choices of which instance (first, last, all), key naming (snake_case, kebab_case,
camel_case, pascal_case or an explicit target) and optional removal."""

from __future__ import annotations

import re
from dataclasses import dataclass

MATCHES = ("first", "last", "all")
SPEC_FIELDS = frozenset(("name", "match", "transform", "target", "remove"))
_WORD_SEPARATOR = re.compile(r"[-_\s]+")


class HeaderImportError(ValueError):
    """A spec KumoMTA would refuse."""


def _words(name: str) -> list[str]:
    return [word for word in _WORD_SEPARATOR.split(name) if word]


def _capitalized(word: str) -> str:
    return word[:1].upper() + word[1:].lower()


TRANSFORMS = {
    "snake_case": lambda name: "_".join(word.lower() for word in _words(name)),
    "kebab_case": lambda name: "-".join(word.lower() for word in _words(name)),
    "camel_case": lambda name: "".join(
        word.lower() if i == 0 else _capitalized(word) for i, word in enumerate(_words(name))
    ),
    "pascal_case": lambda name: "".join(_capitalized(word) for word in _words(name)),
}


@dataclass(frozen=True, slots=True)
class HeaderImport:
    pattern: str  # lowercased; a prefix when `wildcard`
    wildcard: bool
    match: str
    transform: str
    target: str | None
    remove: bool

    def matches(self, lowered_name: str) -> bool:
        if self.wildcard:
            return lowered_name.startswith(self.pattern)
        return lowered_name == self.pattern

    def key(self, name: str) -> str:
        return self.target if self.target is not None else TRANSFORMS[self.transform](name)


def parse_specs(specs: object) -> list[HeaderImport]:
    if specs == {}:
        specs = []  # an empty Lua table
    if not isinstance(specs, list):
        raise HeaderImportError("expected a list of header import specs")
    return [_parse_spec(i + 1, spec) for i, spec in enumerate(specs)]


def _parse_spec(index: int, spec: object) -> HeaderImport:
    where = f"spec {index}"
    if not isinstance(spec, dict):
        raise HeaderImportError(f"{where}: expected a table")
    unknown = sorted(set(spec) - SPEC_FIELDS)
    if unknown:
        raise HeaderImportError(f"{where}: unknown field(s) {', '.join(unknown)}")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise HeaderImportError(f"{where}: name is required (a header name or 'Prefix-*')")
    wildcard = name.endswith("*")
    pattern = name[:-1] if wildcard else name
    if not pattern or "*" in pattern:
        raise HeaderImportError(
            f"{where}: {name!r}: only one trailing '*' after a literal prefix is supported"
        )
    match = spec.get("match", "last")
    if match not in MATCHES:
        raise HeaderImportError(f"{where}: match must be 'first', 'last' or 'all'")
    transform = spec.get("transform", "snake_case")
    if transform not in TRANSFORMS:
        raise HeaderImportError(f"{where}: transform must be one of {', '.join(TRANSFORMS)}")
    target = spec.get("target")
    if target is not None and (not isinstance(target, str) or not target):
        raise HeaderImportError(f"{where}: target must be a non-empty string")
    if target is not None and wildcard:
        raise HeaderImportError(f"{where}: target cannot be used with a wildcard name")
    remove = spec.get("remove", False)
    if not isinstance(remove, bool):
        raise HeaderImportError(f"{where}: remove must be true or false")
    return HeaderImport(pattern.lower(), wildcard, match, transform, target, remove)


def imported_meta(
    specs: list[HeaderImport], fields: list[tuple[str, str]]
) -> tuple[dict[str, str | list[str]], set[str]]:
    """(meta key -> value, lowercased names of the fields to remove). Each header goes to the
    first spec that matches it."""
    found: dict[str, tuple[HeaderImport, list[str]]] = {}
    removed: set[str] = set()
    for name, value in fields:
        lowered = name.lower()
        spec = next((spec for spec in specs if spec.matches(lowered)), None)
        if spec is None:
            continue
        found.setdefault(spec.key(name), (spec, []))[1].append(value)
        if spec.remove:
            removed.add(lowered)
    meta: dict[str, str | list[str]] = {}
    for key, (spec, values) in found.items():
        meta[key] = values if spec.match == "all" else values[0 if spec.match == "first" else -1]
    return meta, removed
