"""The Avro contracts as parsed schemas: current versions, frozen releases, fingerprints.

`schemas/*.avsc` are the current contracts; a file whose named type other files refer to
(`SmtpResponse`) is an embedded type, not an event. `schemas/released/<Name>/vN.avsc` are
frozen, self-contained copies (embedded types inlined) of every version ever released: a
record written with any of them must stay decodable, so decoding looks writers up among
all of them by fingerprint.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

from .avro_writer import UnsupportedSchema, Writer, compile_writer, full_name

SCHEMA_PACKAGE = "relaystream.schemas"
FINGERPRINT_ALGORITHM = "CRC-64-AVRO"

# A parsed fastavro schema (a dict with fastavro's private bookkeeping keys).
ParsedSchema = dict[str, Any]


class SchemaRegistryError(Exception):
    """The schema files are inconsistent (unresolvable names, duplicate fingerprints...)."""


@dataclass(frozen=True)
class SchemaVersion:
    """One writer schema: an event's current schema or one of its released versions."""

    name: str
    version: int | None  # None: the current schema (which may equal a released version)
    canonical_form: str
    fingerprint: bytes  # 8 bytes, little-endian CRC-64-AVRO of the canonical form
    parsed: ParsedSchema
    source: Mapping[str, Any]  # the self-contained JSON schema, embedded types inlined
    write: Writer  # checks a record against the schema and appends its Avro binary encoding


def short_name(fullname: str) -> str:
    return fullname.rsplit(".", 1)[-1]


def schema_fingerprint(canonical_form: str) -> bytes:
    """The 8 fingerprint bytes as single-object encoding writes them (little-endian).

    fastavro renders CRC-64-AVRO as the hex of those little-endian bytes (checked against
    the Avro spec's test vector in the unit tests).
    """
    return bytes.fromhex(fingerprint(canonical_form, FINGERPRINT_ALGORITHM))


def _strip_fastavro_keys(schema: Any) -> Any:
    """A parsed schema as plain Avro JSON (fastavro adds `__fastavro_parsed` and such)."""
    if isinstance(schema, dict):
        return {
            key: _strip_fastavro_keys(value)
            for key, value in schema.items()
            if not key.startswith("__")
        }
    if isinstance(schema, list):
        return [_strip_fastavro_keys(item) for item in schema]
    return schema


def _referenced_names(schema: Any) -> set[str]:
    """Every named-type reference (a bare string type that is not a primitive)."""
    primitives = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
    found: set[str] = set()
    if isinstance(schema, str):
        if schema not in primitives:
            found.add(schema)
    elif isinstance(schema, list):
        for branch in schema:
            found |= _referenced_names(branch)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind == "record":
            for field in schema["fields"]:
                found |= _referenced_names(field["type"])
        elif kind == "array":
            found |= _referenced_names(schema["items"])
        elif kind == "map":
            found |= _referenced_names(schema["values"])
        elif kind not in {"enum", "fixed"}:
            found |= _referenced_names(kind)
    return found


def version_of(source: Mapping[str, Any], name: str, version: int | None) -> SchemaVersion:
    """Parses one self-contained schema and computes its canonical form and fingerprint."""
    parsed = parse_schema(dict(source), named_schemas={})
    if not isinstance(parsed, dict) or parsed.get("type") != "record":
        raise SchemaRegistryError(f"{name}: an event schema must be a record")
    canonical_form = to_parsing_canonical_form(parsed)
    try:
        write = compile_writer(source)
    except UnsupportedSchema as err:
        raise SchemaRegistryError(f"{name}: {err}") from err
    return SchemaVersion(
        name=name,
        version=version,
        canonical_form=canonical_form,
        fingerprint=schema_fingerprint(canonical_form),
        parsed=parsed,
        source=source,
        write=write,
    )


def _defined_names(schema: Any, namespace: str | None = None) -> set[str]:
    """Full names of the named types a schema defines (itself and nested ones)."""
    found: set[str] = set()
    if isinstance(schema, list):
        for branch in schema:
            found |= _defined_names(branch, namespace)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in {"record", "enum", "fixed"}:
            fullname = full_name(schema, namespace)
            found.add(fullname)
            namespace = fullname.rpartition(".")[0] or None
        if kind == "record":
            for field in schema["fields"]:
                found |= _defined_names(field["type"], namespace)
        elif kind == "array":
            found |= _defined_names(schema["items"], namespace)
        elif kind == "map":
            found |= _defined_names(schema["values"], namespace)
        elif isinstance(kind, list | dict):
            found |= _defined_names(kind, namespace)
    return found


def expand_current(sources: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Current event schemas, each self-contained (embedded named types inlined), by name.

    Files may refer to each other's named types in any order: parse them in dependency
    order, then expand each event on its own. A file whose type another file refers to is
    an embedded type, not an event.
    """
    files = {full_name(source): dict(source) for source in sources}
    needs = {
        fullname: _referenced_names(source) - _defined_names(source)
        for fullname, source in files.items()
    }
    embedded = set().union(*needs.values())
    named: dict[str, ParsedSchema] = {}
    pending = dict(files)
    while pending:
        ready = [fullname for fullname in pending if needs[fullname] <= set(named)]
        if not ready:
            raise SchemaRegistryError(f"unresolvable named types in {sorted(pending)}")
        for fullname in ready:
            parse_schema(pending.pop(fullname), named_schemas=named)
    expanded: dict[str, Mapping[str, Any]] = {}
    for fullname in sorted(set(files) - embedded):
        full = parse_schema(files[fullname], named_schemas=dict(named), expand=True)
        expanded[short_name(fullname)] = _strip_fastavro_keys(full)
    return expanded


class SchemaRegistry:
    """Parsed current schemas (the readers) and every writer schema by fingerprint."""

    def __init__(
        self,
        current: Mapping[str, Mapping[str, Any]],
        released: Mapping[str, Mapping[int, Mapping[str, Any]]],
    ) -> None:
        """`current`: self-contained schemas by name; `released`: name -> number -> schema."""
        self._current = {name: version_of(src, name, None) for name, src in current.items()}
        self._released = {
            name: {number: version_of(src, name, number) for number, src in versions.items()}
            for name, versions in released.items()
        }
        self._writers: dict[bytes, SchemaVersion] = {}
        for writer in self._all_versions():
            known = self._writers.get(writer.fingerprint)
            if known is not None and known.name != writer.name:
                raise SchemaRegistryError(
                    f"{writer.name} and {known.name} share fingerprint {writer.fingerprint.hex()}"
                )
            if known is None or known.version is None:
                self._writers[writer.fingerprint] = writer
        orphans = set(self._released) - set(self._current)
        if orphans:
            # A released event must keep a current reader, or its old records become unreadable.
            raise SchemaRegistryError(f"released schemas without a current schema: {orphans}")

    def _all_versions(self) -> Iterable[SchemaVersion]:
        yield from self._current.values()
        for versions in self._released.values():
            yield from versions.values()

    @classmethod
    def from_package(cls, package: str = SCHEMA_PACKAGE) -> SchemaRegistry:
        root = resources.files(package)
        current_sources = [
            json.loads(entry.read_text("utf-8"))
            for entry in root.iterdir()
            if entry.is_file() and entry.name.endswith(".avsc")
        ]
        return cls(expand_current(current_sources), _load_released(root / "released"))

    def names(self) -> list[str]:
        return sorted(self._current)

    def current(self, name: str) -> SchemaVersion:
        """The current schema of an event; KeyError when there is no such event."""
        return self._current[name]

    def released(self, name: str) -> dict[int, SchemaVersion]:
        """Released versions of an event by number (empty if never released)."""
        return dict(self._released.get(name, {}))

    def writer(self, fingerprint: bytes) -> SchemaVersion | None:
        return self._writers.get(fingerprint)


def _load_released(root: Traversable) -> dict[str, dict[int, Mapping[str, Any]]]:
    released: dict[str, dict[int, Mapping[str, Any]]] = {}
    if not root.is_dir():
        return released
    for event_dir in root.iterdir():
        if not event_dir.is_dir():
            continue
        for entry in event_dir.iterdir():
            stem = entry.name.removesuffix(".avsc")
            if entry.name.endswith(".avsc") and stem[:1] == "v" and stem[1:].isdigit():
                source = json.loads(entry.read_text("utf-8"))
                released.setdefault(event_dir.name, {})[int(stem[1:])] = source
    return released
