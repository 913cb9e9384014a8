"""The event codec: single-object framing, round trips, refusals, typed records, meta."""

from __future__ import annotations

import types
from datetime import UTC, datetime
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import pytest
from avro_strategies import record_strategy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relaystream.core.events import (
    DecodeError,
    EncodeError,
    MetaError,
    SchemaRegistry,
    decode,
    decode_meta,
    decode_with,
    encode,
    encode_meta,
    encode_with,
    registry,
    schema_names,
)
from relaystream.core.events.codec import HEADER_SIZE, MARKER
from relaystream.core.events.records import EVENT_RECORDS
from relaystream.core.events.registry import schema_fingerprint

EVENTS = schema_names()
ROUND_TRIP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def crc64_avro(data: bytes) -> int:
    """The Avro spec's reference Rabin fingerprint, written out to check fastavro's."""
    empty = 0xC15D213AA4D7A795
    table = []
    for index in range(256):
        value = index
        for _ in range(8):
            value = (value >> 1) ^ (empty & -(value & 1))
        table.append(value)
    value = empty
    for byte in data:
        value = (value >> 8) ^ table[(value ^ byte) & 0xFF]
    return value


def accepted(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": "0123456789abcdef0123456789abcdef",
        "sender": "sender@example.com",
        "recipient": "rcpt@example.org",
        "content": b"Subject: hi\r\n\r\nbody\r\n",
        "reception_protocol": "ESMTP",
        "received_at": datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
    }
    record.update(changes)
    return record


def outcome(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": "0123456789abcdef0123456789abcdef",
        "queue": "example.org",
        "attempt": 1,
        "kind": "DELIVERED",
        "response": {"code": 250, "enhanced_code": None, "content": "ok", "command": None},
        "site": "mx.example.org",
        "completed_at": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
    }
    record.update(changes)
    return record


# --- framing -------------------------------------------------------------------------


def test_fingerprint_matches_the_avro_spec_test_vector() -> None:
    # From Avro's schema-tests.txt: the CRC-64-AVRO fingerprint of "null".
    assert schema_fingerprint('"null"') == (7195948357588979594).to_bytes(8, "little")


@pytest.mark.parametrize("name", EVENTS)
def test_fingerprint_is_the_rabin_crc_of_the_canonical_form(name: str) -> None:
    schema = registry().current(name)
    expected = crc64_avro(schema.canonical_form.encode()).to_bytes(8, "little")
    assert schema.fingerprint == expected


def test_canonical_form_inlines_the_shared_smtp_response() -> None:
    canonical = registry().current("DeliveryOutcome").canonical_form
    assert '"name":"dev.relaystream.events.SmtpResponse","type":"record"' in canonical
    assert '"doc"' not in canonical


def test_encoding_starts_with_marker_and_writer_fingerprint() -> None:
    data = encode("MessageAccepted", accepted())
    assert data[:2] == MARKER == b"\xc3\x01"
    assert data[2:HEADER_SIZE] == registry().current("MessageAccepted").fingerprint


def test_schema_names_are_the_events_not_embedded_types() -> None:
    assert sorted(EVENT_RECORDS) == EVENTS
    assert "SmtpResponse" not in EVENTS


# --- round trips ---------------------------------------------------------------------


@pytest.mark.parametrize("name", EVENTS)
@ROUND_TRIP
@given(data=st.data())
def test_every_event_round_trips(name: str, data: st.DataObject) -> None:
    record = data.draw(record_strategy(dict(registry().current(name).source)))
    decoded_name, decoded = decode(encode(name, record), expected=name)
    assert decoded_name == name
    assert decoded == record


def test_timestamps_come_back_as_utc_aware_datetimes() -> None:
    _, record = decode(encode("MessageAccepted", accepted()))
    assert record["received_at"] == datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    assert record["received_at"].tzinfo is UTC


def test_defaults_fill_omitted_fields() -> None:
    _, record = decode(encode("MessageAccepted", accepted()))
    assert record["meta"] == {}
    assert record["transaction_id"] is None


def test_a_realistic_record_round_trips_byte_for_byte_content() -> None:
    content = b"Subject: x\r\n\r\n" + bytes(range(256)) * 40
    _, record = decode(encode("MessageAccepted", accepted(content=content)))
    assert record["content"] == content


# --- encode refusals -----------------------------------------------------------------


def test_encode_refuses_a_naive_datetime() -> None:
    with pytest.raises(EncodeError, match=r"received_at: naive datetime"):
        encode("MessageAccepted", accepted(received_at=datetime(2025, 1, 2, 3, 4, 5)))


@pytest.mark.parametrize(
    ("name", "record", "complaint"),
    [
        ("NoSuchEvent", accepted(), "no event schema named 'NoSuchEvent'"),
        ("MessageAccepted", {k: v for k, v in accepted().items() if k != "sender"}, "sender"),
        ("MessageAccepted", accepted(unknown_field=1), "unknown_field"),
        ("MessageAccepted", accepted(content="text, not bytes"), "content"),
        ("MessageAccepted", accepted(meta={"k": 1}), "meta"),
        ("DeliveryOutcome", outcome(attempt=True), "attempt"),
        ("DeliveryOutcome", outcome(attempt=1.5), "attempt"),
        ("DeliveryOutcome", outcome(attempt=2**31), "attempt"),
        ("DeliveryOutcome", outcome(kind="LOST"), "kind"),
        ("DeliveryOutcome", outcome(response={"code": 250}), "content"),
    ],
)
def test_encode_refuses_records_that_do_not_fit(
    name: str, record: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(EncodeError, match=complaint):
        encode(name, record)


# --- decode refusals -----------------------------------------------------------------


def test_decode_refusals_say_why() -> None:
    good = encode("MessageAccepted", accepted())
    unknown = MARKER + b"\x00" * 8 + good[HEADER_SIZE:]
    cases = {
        good[:5]: "short data",
        b"\x00\x01" + good[2:]: "bad marker",
        unknown: "unknown writer schema fingerprint 0000000000000000",
        good[:-3]: "corrupt MessageAccepted body",
        good + b"\x00": "1 trailing bytes",
    }
    for data, reason in cases.items():
        with pytest.raises(DecodeError) as caught:
            decode(data)
        assert reason in caught.value.reason


def test_decode_refuses_another_event_than_expected() -> None:
    with pytest.raises(DecodeError, match="expected a QueuedMessage record, got MessageAccepted"):
        decode(encode("MessageAccepted", accepted()), expected="QueuedMessage")


def decodes_or_refuses(data: bytes) -> None:
    try:
        name, record = decode(data)
    except DecodeError as error:
        assert error.reason
    else:
        assert name in EVENTS
        assert isinstance(record, dict)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_ever_raise_decode_error(data: bytes) -> None:
    decodes_or_refuses(data)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(EVENTS), st.binary(max_size=300))
def test_garbage_after_a_valid_header_only_ever_raises_decode_error(name: str, body: bytes) -> None:
    decodes_or_refuses(MARKER + registry().current(name).fingerprint + body)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_corrupted_encodings_only_ever_raise_decode_error(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(EVENTS))
    encoded = bytearray(
        encode(name, data.draw(record_strategy(dict(registry().current(name).source))))
    )
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(HEADER_SIZE, len(encoded) - 1))
        encoded[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(HEADER_SIZE, len(encoded)))
    decodes_or_refuses(bytes(encoded[:cut]))


# --- typed records -------------------------------------------------------------------


def annotation_fits(annotation: Any, schema: Any) -> bool:
    """Whether a TypedDict field annotation is the Python shape of an Avro schema."""
    if isinstance(schema, list):
        branches = [branch for branch in schema if branch != "null"]
        if get_origin(annotation) not in (Union, types.UnionType):
            return False
        args = get_args(annotation)
        return (
            type(None) in args
            and len(branches) == 1
            and annotation_fits(next(arg for arg in args if arg is not type(None)), branches[0])
        )
    if isinstance(schema, str):
        primitives = {"string": str, "bytes": bytes, "int": int, "long": int, "boolean": bool}
        return primitives.get(schema) is annotation
    kind = schema["type"]
    if schema.get("logicalType") == "timestamp-millis":
        return annotation is datetime
    if kind == "enum":
        return get_origin(annotation) is Literal and list(get_args(annotation)) == schema["symbols"]
    if kind == "map":
        return (
            get_origin(annotation) is dict
            and get_args(annotation)[0] is str
            and annotation_fits(get_args(annotation)[1], schema["values"])
        )
    if kind == "array":
        return get_origin(annotation) is list and annotation_fits(
            get_args(annotation)[0], schema["items"]
        )
    if kind == "record":
        return typed_dict_fits(annotation, schema)
    return annotation_fits(annotation, kind)


def typed_dict_fits(typed_dict: Any, schema: dict[str, Any]) -> bool:
    hints = get_type_hints(typed_dict)
    fields = schema["fields"]
    return list(hints) == [field["name"] for field in fields] and all(
        annotation_fits(hints[field["name"]], field["type"]) for field in fields
    )


@pytest.mark.parametrize("name", EVENTS)
def test_typed_record_matches_its_schema(name: str) -> None:
    assert typed_dict_fits(EVENT_RECORDS[name], dict(registry().current(name).source))


def test_typed_record_check_notices_a_mismatch() -> None:
    source = dict(registry().current("MessageAccepted").source)
    renamed = [
        {**field, "name": "from"} if field["name"] == "sender" else field
        for field in source["fields"]
    ]
    assert not typed_dict_fits(EVENT_RECORDS["MessageAccepted"], {**source, "fields": renamed})


# --- meta ----------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.text(), JSON_VALUES, max_size=6))
def test_meta_round_trips_through_json_texts(meta: dict[str, Any]) -> None:
    encoded = encode_meta(meta)
    assert all(isinstance(text, str) for text in encoded.values())
    assert decode_meta(encoded) == meta


def test_meta_values_are_compact_json() -> None:
    assert encode_meta({"queue": "example.com", "n": 2, "tags": ["a"]}) == {
        "queue": '"example.com"',
        "n": "2",
        "tags": '["a"]',
    }


def test_meta_refuses_what_json_cannot_express() -> None:
    with pytest.raises(MetaError, match="'when'"):
        encode_meta({"when": datetime.now(UTC)})
    with pytest.raises(MetaError, match="'nan'"):
        encode_meta({"nan": float("nan")})
    with pytest.raises(MetaError, match="'queue' is not JSON"):
        decode_meta({"queue": "example.com"})


def test_encode_refuses_a_naive_datetime_nested_in_a_union() -> None:
    nested = {
        "type": "record",
        "name": "Probe",
        "fields": [
            {"name": "at", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}]}
        ],
    }
    schemas = SchemaRegistry({"Probe": nested}, {})
    with pytest.raises(EncodeError, match=r"Probe\.at: naive datetime"):
        encode_with(schemas, "Probe", {"at": datetime(2025, 1, 1)})
    aware = datetime(2025, 1, 1, tzinfo=UTC)
    assert decode_with(schemas, encode_with(schemas, "Probe", {"at": aware})) == (
        "Probe",
        {"at": aware},
    )
