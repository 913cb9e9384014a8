"""Avro single-object encoding of the event contracts.

A value on a topic is `C3 01`, the 8-byte little-endian CRC-64-AVRO fingerprint of the
writer schema's Parsing Canonical Form, then the Avro binary body. The fingerprint names the
writer schema, so a reader decodes records written with any released version of a contract
and resolves them into the current schema (new fields get their defaults).

Pure: the only I/O is reading the packaged schemas once, on first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from io import BytesIO
from typing import Any

from fastavro import schemaless_reader

from .avro_writer import AvroWriteError
from .registry import SchemaRegistry

MARKER = b"\xc3\x01"
FINGERPRINT_SIZE = 8
HEADER_SIZE = len(MARKER) + FINGERPRINT_SIZE


class EncodeError(ValueError):
    """A record does not fit its schema (or names no event), so it was not encoded."""


class DecodeError(Exception):
    """Bytes that are not a decodable event; `reason` says why (for the dead-letter record)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@cache
def registry() -> SchemaRegistry:
    """The packaged schemas, parsed once per process."""
    return SchemaRegistry.from_package()


def schema_names() -> list[str]:
    """The event names `encode` accepts, sorted ("AdminCommand", ..., "RoutingDecision")."""
    return registry().names()


def encode(schema_name: str, record: Mapping[str, Any]) -> bytes:
    """Encodes `record` with the current schema of event `schema_name`; see `encode_with`."""
    return encode_with(registry(), schema_name, record)


def decode(data: bytes, expected: str | None = None) -> tuple[str, dict[str, Any]]:
    """Decodes one event into the current schema of its name; see `decode_with`."""
    return decode_with(registry(), data, expected)


def encode_with(schemas: SchemaRegistry, schema_name: str, record: Mapping[str, Any]) -> bytes:
    """Encodes `record` with the current schema of event `schema_name` in `schemas`.

    Raises EncodeError for an unknown event, a missing field without default, an unknown
    field, a value of the wrong type (a bool or float where an int belongs, too), or a naive
    datetime (every timestamp in the contracts is UTC; a naive one would be a guess).
    """
    try:
        schema = schemas.current(schema_name)
    except KeyError:
        raise EncodeError(f"no event schema named {schema_name!r}") from None
    out = bytearray(MARKER)
    out += schema.fingerprint
    try:
        schema.write(record, out)
    except AvroWriteError as err:
        # The path names the field; the problem quotes at most a short prefix of the value.
        raise EncodeError(f"{schema_name}.{err}" if err.path else f"{schema_name}: {err}") from err
    return bytes(out)


def decode_with(
    schemas: SchemaRegistry, data: bytes, expected: str | None = None
) -> tuple[str, dict[str, Any]]:
    """Decodes one single-object-encoded event into the current schema of its name.

    The writer schema is found by fingerprint among the current and released schemas of
    `schemas`.

    Returns (event name, record). Timestamps come back as UTC-aware datetimes. Raises
    DecodeError when the data is short, lacks the marker, names an unknown writer schema,
    has a corrupt body or trailing bytes, or is not the `expected` event.
    """
    if len(data) < HEADER_SIZE:
        raise DecodeError(f"short data: {len(data)} bytes, a header needs {HEADER_SIZE}")
    if data[: len(MARKER)] != MARKER:
        raise DecodeError(f"bad marker {bytes(data[: len(MARKER)]).hex()}, expected c301")
    fingerprint = bytes(data[len(MARKER) : HEADER_SIZE])
    writer = schemas.writer(fingerprint)
    if writer is None:
        raise DecodeError(f"unknown writer schema fingerprint {fingerprint.hex()}")
    if expected is not None and writer.name != expected:
        raise DecodeError(f"expected a {expected} record, got {writer.name}")
    reader = schemas.current(writer.name)
    body = BytesIO(data)
    body.seek(HEADER_SIZE)
    try:
        record = schemaless_reader(
            body,
            writer.parsed,
            # Same fingerprint: no resolution needed, and fastavro skips it when given None.
            None if writer.fingerprint == reader.fingerprint else reader.parsed,
        )
    except Exception as exc:
        # fastavro raises whatever its readers meet in garbage (EOFError, UnicodeDecodeError,
        # IndexError for an enum index, OverflowError for a timestamp, MemoryError...).
        raise DecodeError(f"corrupt {writer.name} body: {type(exc).__name__}: {exc}") from exc
    if body.tell() != len(data):
        raise DecodeError(f"corrupt {writer.name} body: {len(data) - body.tell()} trailing bytes")
    if not isinstance(record, dict):
        raise DecodeError(f"corrupt {writer.name} body: not a record")
    return writer.name, record
