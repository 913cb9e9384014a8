"""The evolution guard: every current schema reads every released version (BACKWARD), and
FULL events' released versions read the current schema too (FORWARD).

Checked by Avro schema resolution in fastavro on records generated from the writer schema,
so a change the resolution rules reject (a new field without default, a retyped field, a
dropped enum symbol or union branch) fails here before any service writes it.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from io import BytesIO
from typing import Any

import pytest
from avro_strategies import record_strategy
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.validation import validate
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from relaystream.core.events import decode, decode_with, encode_with, registry, schema_names
from relaystream.core.events.codec import MARKER
from relaystream.core.events.compatibility import FULL_EVENTS, Compatibility, compatibility_of
from relaystream.core.events.registry import SchemaRegistry

EVENTS = schema_names()
RELEASED = [(name, number) for name in EVENTS for number in sorted(registry().released(name))]
SAMPLES = 100


def assert_reader_reads_writer(
    writer_source: dict[str, Any],
    reader_source: dict[str, Any],
    samples: int = SAMPLES,
    overrides: dict[str, Any] | None = None,
) -> None:
    """Fails with AssertionError if `reader_source` cannot resolve data `writer_source` wrote
    (records generated from the writer's schema, with the fields in `overrides` set)."""
    writer = parse_schema(copy.deepcopy(writer_source), named_schemas={})
    reader = parse_schema(copy.deepcopy(reader_source), named_schemas={})

    @settings(
        max_examples=samples,
        deadline=None,
        database=None,
        # The schemas are the finding, not a minimal record: shrinking would only cost time.
        phases=[Phase.generate],
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(record_strategy(writer_source).map(lambda record: {**record, **(overrides or {})}))
    def reads(record: dict[str, Any]) -> None:
        buffer = BytesIO()
        schemaless_writer(buffer, writer, record)
        buffer.seek(0)
        try:
            resolved = schemaless_reader(buffer, writer, reader)
            validate(resolved, reader, raise_errors=True)
        except Exception as exc:
            raise AssertionError(f"reader cannot read writer's data: {exc!r}") from exc

    reads()


def source(name: str, version: int | None = None) -> dict[str, Any]:
    """A self-contained schema as plain JSON: current, or a released version."""
    schema = registry().current(name) if version is None else registry().released(name)[version]
    return copy.deepcopy(dict(schema.source))


def field_index(schema: dict[str, Any], field_name: str) -> int:
    return next(i for i, field in enumerate(schema["fields"]) if field["name"] == field_name)


# --- the guard on the real contracts -------------------------------------------------


@pytest.mark.parametrize("name", EVENTS)
def test_every_current_schema_is_released(name: str) -> None:
    """Records written with an unreleased schema would become undecodable after its next
    change: release with `python -m relaystream.core.events.release schemas`."""
    current = registry().current(name).fingerprint
    assert current in {v.fingerprint for v in registry().released(name).values()}


@pytest.mark.parametrize("name", EVENTS)
def test_released_versions_are_numbered_from_one_and_name_their_event(name: str) -> None:
    released = registry().released(name)
    assert sorted(released) == list(range(1, len(released) + 1))
    assert all(v.source["name"].rsplit(".", 1)[-1] == name for v in released.values())


@pytest.mark.parametrize(("name", "version"), RELEASED)
def test_current_schema_reads_every_released_version(name: str, version: int) -> None:
    assert_reader_reads_writer(source(name, version), source(name))


@pytest.mark.parametrize(
    ("name", "version"), [(n, v) for n, v in RELEASED if compatibility_of(n) is Compatibility.FULL]
)
def test_full_events_released_versions_read_the_current_schema(name: str, version: int) -> None:
    assert_reader_reads_writer(source(name), source(name, version))


def test_full_compatibility_is_declared_for_the_published_events() -> None:
    assert {"MessageSubmitted", "LogRecord"} == FULL_EVENTS
    assert set(EVENTS) >= FULL_EVENTS
    assert compatibility_of("MessageAccepted") is Compatibility.BACKWARD


@pytest.mark.parametrize(("name", "version"), RELEASED)
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_records_framed_with_a_released_fingerprint_decode(
    name: str, version: int, data: st.DataObject
) -> None:
    released = registry().released(name)[version]
    body = BytesIO()
    record = data.draw(record_strategy(dict(released.source)))
    schemaless_writer(body, released.parsed, record)
    decoded_name, _ = decode(MARKER + released.fingerprint + body.getvalue())
    assert decoded_name == name


# --- the decode path resolves an old writer into a new reader ------------------------


def with_priority_field() -> dict[str, Any]:
    """MessageAccepted v2 as a future change would make it: one field added with default."""
    schema = source("MessageAccepted")
    schema["fields"].append({"name": "priority", "type": "int", "default": 5})
    return schema


def test_decode_resolves_a_released_writer_into_the_current_reader() -> None:
    v1 = source("MessageAccepted", 1)
    schemas = SchemaRegistry(
        {"MessageAccepted": with_priority_field()}, {"MessageAccepted": {1: v1}}
    )
    old = SchemaRegistry({"MessageAccepted": v1}, {})
    record = {
        "id": "0" * 32,
        "sender": "a@example.com",
        "recipient": "b@example.org",
        "content": b"x",
        "reception_protocol": "ESMTP",
        "received_at": datetime(2025, 6, 1, tzinfo=UTC),
    }
    name, decoded = decode_with(schemas, encode_with(old, "MessageAccepted", record))
    assert name == "MessageAccepted"
    assert decoded["priority"] == 5
    assert decoded["sender"] == "a@example.com"
    _, current = decode_with(
        schemas, encode_with(schemas, "MessageAccepted", {**record, "priority": 1})
    )
    assert current["priority"] == 1


# --- the guard catches incompatible changes ------------------------------------------


def test_guard_accepts_adding_a_field_with_default_both_ways() -> None:
    assert_reader_reads_writer(source("MessageAccepted"), with_priority_field())
    assert_reader_reads_writer(with_priority_field(), source("MessageAccepted"))


def test_guard_accepts_widening_int_to_long() -> None:
    widened = source("DeliveryOutcome")
    widened["fields"][field_index(widened, "attempt")]["type"] = "long"
    assert_reader_reads_writer(source("DeliveryOutcome"), widened)


def test_guard_catches_a_new_field_without_default() -> None:
    changed = source("MessageAccepted")
    changed["fields"].append({"name": "priority", "type": "int"})
    with pytest.raises(AssertionError, match="cannot read"):
        assert_reader_reads_writer(source("MessageAccepted"), changed)


def test_guard_catches_a_retyped_field() -> None:
    changed = source("MessageAccepted")
    changed["fields"][field_index(changed, "sender")]["type"] = "int"
    with pytest.raises(AssertionError, match="cannot read"):
        assert_reader_reads_writer(source("MessageAccepted"), changed)


def test_guard_catches_a_dropped_enum_symbol() -> None:
    changed = source("AdminCommand")
    action = changed["fields"][field_index(changed, "action")]["type"]
    action["symbols"] = [s for s in action["symbols"] if s != "REBIND"]
    with pytest.raises(AssertionError, match="cannot read"):
        assert_reader_reads_writer(source("AdminCommand"), changed, overrides={"action": "REBIND"})


def test_guard_catches_a_dropped_union_branch() -> None:
    changed = source("RoutingDecision")
    changed["fields"][field_index(changed, "queue")] = {"name": "queue", "type": "string"}
    with pytest.raises(AssertionError, match="cannot read"):
        assert_reader_reads_writer(source("RoutingDecision"), changed, overrides={"queue": None})


def test_forward_guard_catches_a_removed_field_old_readers_need() -> None:
    newer = source("MessageSubmitted")
    del newer["fields"][field_index(newer, "sender")]
    assert_reader_reads_writer(source("MessageSubmitted"), newer)  # backward alone is fine
    with pytest.raises(AssertionError, match="cannot read"):
        assert_reader_reads_writer(newer, source("MessageSubmitted"))


def test_forward_guard_catches_a_new_enum_symbol_an_old_reader_has_no_default_for() -> None:
    newer = source("LogRecord")
    newer["fields"][field_index(newer, "type")]["type"]["symbols"].append("Feedback")
    assert_reader_reads_writer(source("LogRecord"), newer)
    # Every record uses the new symbol: left to chance, a run may never draw it.
    with pytest.raises(AssertionError, match="cannot read"):
        assert_reader_reads_writer(newer, source("LogRecord", 1), overrides={"type": "Feedback"})


def test_log_record_types_can_grow_for_readers_since_v2() -> None:
    """LogRecord v2 gave its RecordType enum a default: a type added later (KumoMTA has more)
    reads as that default instead of failing the reader."""
    newer = source("LogRecord")
    newer["fields"][field_index(newer, "type")]["type"]["symbols"].append("Feedback")
    assert_reader_reads_writer(newer, source("LogRecord"), overrides={"type": "Feedback"})
