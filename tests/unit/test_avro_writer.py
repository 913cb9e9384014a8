"""The generated Avro writers write fastavro's bytes and refuse what fastavro's strict
validation refuses, for every contract (current and released) and for the Avro types our
contracts do not use yet."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from io import BytesIO
from typing import Any

import pytest
from avro_strategies import record_strategy
from fastavro import parse_schema, schemaless_writer
from fastavro.validation import validate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relaystream.core.events.avro_writer import (
    AvroWriteError,
    UnsupportedSchema,
    compile_writer,
)
from relaystream.core.events.codec import registry

EXAMPLES = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

WRITER_SCHEMAS = [registry().current(name) for name in registry().names()] + [
    version for name in registry().names() for version in registry().released(name).values()
]

# Every type, including the ones our contracts do not use (yet): float, double, boolean,
# fixed, nested arrays, a union of several branches, a recursive record.
EVERY_TYPE: dict[str, Any] = {
    "type": "record",
    "name": "Everything",
    "namespace": "test",
    "fields": [
        {"name": "flag", "type": "boolean"},
        {"name": "small", "type": "int"},
        {"name": "big", "type": "long"},
        {"name": "ratio", "type": "float"},
        {"name": "precise", "type": "double"},
        {"name": "raw", "type": "bytes"},
        {"name": "text", "type": "string"},
        {"name": "hash", "type": {"type": "fixed", "name": "Hash", "size": 4}},
        {"name": "colour", "type": {"type": "enum", "name": "Colour", "symbols": ["RED", "GREEN"]}},
        {"name": "grid", "type": {"type": "array", "items": {"type": "array", "items": "long"}}},
        {"name": "labels", "type": {"type": "map", "values": ["null", "string"]}},
        {"name": "choice", "type": ["string", "null", "long", "boolean", "bytes"]},
        {"name": "when", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}]},
        {"name": "again", "type": ["null", "Hash"], "default": None},
        {"name": "tint", "type": "Colour", "default": "GREEN"},
        {"name": "blob", "type": "bytes", "default": "\u00ff\u0000"},
        {"name": "count", "type": "int", "default": 7},
        {
            "name": "child",
            "type": [
                "null",
                {
                    "type": "record",
                    "name": "Node",
                    "fields": [
                        {"name": "label", "type": "string"},
                        {"name": "next", "type": ["null", "Node"], "default": None},
                    ],
                },
            ],
            "default": None,
        },
    ],
}


def fastavro_bytes(schema: Any, record: Any) -> bytes:
    out = BytesIO()
    schemaless_writer(out, parse_schema(schema, named_schemas={}), record)
    return out.getvalue()


def generated_bytes(schema: Any, record: Any) -> bytes:
    out = bytearray()
    compile_writer(schema)(record, out)
    return bytes(out)


@pytest.mark.parametrize(
    "schema", WRITER_SCHEMAS, ids=lambda v: f"{v.name}-{v.version or 'current'}"
)
@EXAMPLES
@given(data=st.data())
def test_every_contract_is_written_as_fastavro_writes_it(schema: Any, data: st.DataObject) -> None:
    source = dict(schema.source)
    record = data.draw(record_strategy(source))
    assert generated_bytes(source, record) == fastavro_bytes(source, record)


def nodes(depth: int) -> dict[str, Any] | None:
    return None if depth == 0 else {"label": f"n{depth}", "next": nodes(depth - 1)}


@EXAMPLES
@given(data=st.data(), depth=st.integers(0, 3))
def test_every_avro_type_is_written_as_fastavro_writes_it(data: st.DataObject, depth: int) -> None:
    record = data.draw(record_strategy(EVERY_TYPE))
    record["child"] = nodes(depth)
    assert generated_bytes(EVERY_TYPE, record) == fastavro_bytes(EVERY_TYPE, record)


def test_omitted_fields_are_written_with_their_defaults() -> None:
    record = {
        "flag": True,
        "small": -1,
        "big": 2**40,
        "ratio": 0.5,
        "precise": -1e300,
        "raw": b"",
        "text": "é",
        "hash": b"abcd",
        "colour": "RED",
        "grid": [[1, -2], []],
        "labels": {"a": None, "b": "x"},
        "choice": 5,
        "when": datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    }
    full = {**record, "again": None, "tint": "GREEN", "blob": b"\xff\x00", "count": 7}
    full["child"] = None
    assert generated_bytes(EVERY_TYPE, record) == fastavro_bytes(EVERY_TYPE, full)


def test_aware_timestamps_in_any_zone_are_the_same_instant() -> None:
    schema = {
        "type": "record",
        "name": "At",
        "fields": [{"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}}],
    }
    moment = datetime(2026, 11, 24, 12, 0, 0, 123_456, tzinfo=UTC)
    elsewhere = moment.astimezone(timezone(timedelta(hours=-7)))
    epoch_millis = int(moment.timestamp() * 1000)
    assert generated_bytes(schema, {"at": moment}) == generated_bytes(schema, {"at": elsewhere})
    assert generated_bytes(schema, {"at": moment}) == generated_bytes(schema, {"at": epoch_millis})
    assert generated_bytes(schema, {"at": moment}) == fastavro_bytes(schema, {"at": moment})


def valid_everything() -> dict[str, Any]:
    return {
        "flag": False,
        "small": 1,
        "big": 1,
        "ratio": 1.0,
        "precise": 1.0,
        "raw": b"x",
        "text": "x",
        "hash": b"1234",
        "colour": "RED",
        "grid": [[1]],
        "labels": {"k": "v"},
        "choice": None,
        "when": None,
        "again": b"abcd",
        "tint": "RED",
        "blob": b"\x00",  # every field given: fastavro's validation reads bytes defaults as str
        "count": 0,
        "child": {"label": "a", "next": {"label": "b", "next": None}},
    }


@pytest.mark.parametrize(
    ("change", "path", "complaint"),
    [
        ({"flag": 1}, "flag", "expected a boolean"),
        ({"small": True}, "small", "expected an int"),
        ({"small": 2**31}, "small", "expected an int"),
        ({"small": 1.0}, "small", "expected an int"),
        ({"big": 2**63}, "big", "expected a long"),
        ({"ratio": "1"}, "ratio", "expected a number"),
        ({"ratio": 1e39}, "ratio", "does not fit a 32-bit float"),
        ({"raw": "text"}, "raw", "expected bytes"),
        ({"text": b"bytes"}, "text", "expected a string"),
        ({"hash": b"123"}, "hash", "expected 4 bytes"),
        ({"colour": "BLUE"}, "colour", "not a symbol of enum test.Colour"),
        ({"grid": [[1], [2, "3"]]}, "grid[1][1]", "expected a long"),
        ({"labels": {"k": 1}}, "labels['k']", "expected a string"),
        ({"labels": {1: "v"}}, "labels[1]", "expected a string"),
        ({"choice": 1.5}, "choice", "expected a long"),  # a number: the long branch
        ({"choice": [1]}, "choice", "expected string or null or number or boolean or bytes"),
        ({"when": datetime(2026, 1, 1)}, "when", "naive datetime"),
        ({"child": {"label": "a", "next": {"label": 2}}}, "child.next.label", "expected a string"),
        ({"child": {"label": "a", "extra": 1}}, "child", "unknown field(s) extra"),
        ({"child": {}}, "child.label", "missing field without default"),
        ({"text": "\ud800"}, "", "not encodable as UTF-8"),
    ],
)
def test_refusals_name_the_path_and_the_problem(
    change: dict[str, Any], path: str, complaint: str
) -> None:
    record = {**valid_everything(), **change}
    with pytest.raises(AvroWriteError) as refused:
        generated_bytes(EVERY_TYPE, record)
    assert refused.value.path == path
    assert complaint in refused.value.problem
    # fastavro's strict validation agrees, except where it is laxer: it reads naive datetimes
    # as local time, checks neither float range nor encodability, and ignores unknown keys of
    # a record inside a union.
    lax = ("naive", "float", "UTF-8", "unknown field")
    if not any(word in complaint for word in lax):
        schema = parse_schema(EVERY_TYPE, named_schemas={})
        assert not validate(record, schema, raise_errors=False, strict=True)


def test_a_valid_record_is_valid_for_fastavro_too() -> None:
    record = valid_everything()
    schema = parse_schema(EVERY_TYPE, named_schemas={})
    assert validate(record, schema, raise_errors=False, strict=True)
    assert generated_bytes(EVERY_TYPE, record) == fastavro_bytes(EVERY_TYPE, record)


@pytest.mark.parametrize(
    "union",
    [
        ["null", "int", "long"],
        [{"type": "map", "values": "string"}, {"type": "record", "name": "R", "fields": []}],
        ["string", {"type": "enum", "name": "E", "symbols": ["A"]}],
        ["null", ["null", "string"]],
    ],
)
def test_ambiguous_unions_are_refused_when_compiled(union: list[Any]) -> None:
    schema = {"type": "record", "name": "U", "fields": [{"name": "u", "type": union}]}
    with pytest.raises(UnsupportedSchema):
        compile_writer(schema)


def test_an_invalid_default_is_refused_when_compiled() -> None:
    schema = {
        "type": "record",
        "name": "D",
        "fields": [{"name": "n", "type": "int", "default": "seven"}],
    }
    with pytest.raises(UnsupportedSchema, match=r"D\.n: invalid default"):
        compile_writer(schema)
