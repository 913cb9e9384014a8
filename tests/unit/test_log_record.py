"""KumoMTA-shaped JSON log records and the Avro form."""

import copy
import dataclasses
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kumo_log_shape import assert_kumo_shape

from relaystream.core.domain.log_record import (
    LogRecord,
    PeerAddress,
    RecordType,
    SourceAddress,
    TlsDetails,
    rfc3339,
    to_kumo_json,
    unix_seconds,
)
from relaystream.core.domain.log_writer import LogWriter
from relaystream.core.domain.smtp_reply import EnhancedStatusCode, SmtpResponse
from relaystream.core.events import registry
from relaystream.core.events.meta import encode_meta

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
WHEN = datetime(2026, 3, 1, 12, 0, 5, 250000, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CREATED = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def _record(recipients: tuple[str, ...]) -> LogRecord:
    return LogRecord(
        type=RecordType.TRANSIENT_FAILURE,
        id="abc123",
        sender="s@example.com",
        recipients=recipients,
        queue="t@example.com",
        response=SmtpResponse(451, EnhancedStatusCode(4, 7, 1), "try\nlater", "RCPT TO:<r@x>"),
        timestamp=WHEN,
        created=CREATED,
        site="(mx1|mx2).example.com",
        size=1234,
        peer_address=PeerAddress("mx1.example.com", "192.0.2.1"),
        num_attempts=2,
        egress_pool="pool",
        egress_source="src",
        delivery_protocol="ESMTP",
        reception_protocol="ESMTP",
        meta=encode_meta({"tenant": "t", "campaign": None, "weight": 3, "tags": ["a", "b"]}),
        headers=encode_meta({"Subject": "hi"}),
        nodeid="557f3ad4-2c8c-11ee-976e-782d7e12e173",
    )


def _full(recipients: tuple[str, ...]) -> LogRecord:
    """Every optional field set, as a delivery over TLS fills them."""
    return dataclasses.replace(
        _record(recipients),
        session_id="9bcd689e-23d9-41b7-a015-63a1382f8b57",
        source_address=SourceAddress("10.0.0.1:53210"),
        tls=TlsDetails("TLS_AES_256_GCM_SHA384", "TLSv1.3", ("C=US", "CN=mx1.example.com")),
        provider_name="example",
        feedback_report=json.dumps({"feedback_type": "abuse"}),
    )


def test_one_recipient_renders_as_a_string() -> None:
    rendered = to_kumo_json(_record(("r@example.com",)))
    assert rendered["recipient"] == "r@example.com"
    assert rendered["type"] == "TransientFailure"
    assert rendered["timestamp"] == int(WHEN.timestamp())
    assert rendered["event_time"] == "2026-03-01T12:00:05.250Z"  # as chrono writes it
    assert rendered["created"] == int(CREATED.timestamp())
    assert rendered["created_time"] == "2026-03-01T12:00:00Z"
    assert rendered["response"] == {
        "code": 451,
        "enhanced_code": {"class": 4, "subject": 7, "detail": 1},
        "content": "try later",
        "command": "RCPT TO:<r@x>",
    }
    assert rendered["peer_address"] == {"name": "mx1.example.com", "addr": "192.0.2.1"}
    assert "session_id" not in rendered
    json.dumps(rendered)


def test_several_recipients_render_as_a_list() -> None:
    rendered = to_kumo_json(_record(("a@example.com", "b@example.com")))
    assert rendered["recipient"] == ["a@example.com", "b@example.com"]


def test_avro_round_trip_through_the_schema() -> None:
    named: dict[str, dict[str, object]] = {}
    fastavro.parse_schema(json.loads((SCHEMAS / "SmtpResponse.avsc").read_text()), named)
    schema = fastavro.parse_schema(json.loads((SCHEMAS / "LogRecord.avsc").read_text()), named)
    record = _record(("a@example.com", "b@example.com"))
    value = record.to_avro()
    assert fastavro.validate(value, schema)
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, value)
    buffer.seek(0)
    decoded = fastavro.schemaless_reader(buffer, schema, schema)
    assert isinstance(decoded, dict)
    # The wire form keeps milliseconds only and the content on a single line.
    expected = _record(("a@example.com", "b@example.com"))
    restored = LogRecord.from_avro(decoded)
    assert restored.response.content == "try later"
    assert restored.timestamp == WHEN
    assert restored.recipients == expected.recipients
    assert restored.peer_address == expected.peer_address


@pytest.mark.parametrize("build", [_record, _full])
@pytest.mark.parametrize("recipients", [("a@example.com",), ("a@example.com", "b@example.com")])
def test_rendered_records_have_kumomtas_shape(build: Any, recipients: tuple[str, ...]) -> None:
    assert_kumo_shape(to_kumo_json(build(recipients)))


def test_the_shape_check_refuses_what_kumomta_would_not_write() -> None:
    rendered = to_kumo_json(_record(("a@example.com",)))
    for broken in (
        {**rendered, "meta": "{}"},  # meta as JSON text
        {key: value for key, value in rendered.items() if key != "nodeid"},
        {**rendered, "nodeid": "node-1"},
        {**rendered, "event_time": "2026-03-01T12:00:05.250000+00:00"},
        {**rendered, "session_id": None},  # KumoMTA leaves it out instead
    ):
        with pytest.raises(jsonschema.ValidationError):
            assert_kumo_shape(broken)
    reordered = {"id": rendered["id"], **rendered}
    with pytest.raises(AssertionError, match="order"):
        assert_kumo_shape(reordered)


def test_meta_and_headers_are_json_values_not_json_text() -> None:
    rendered = to_kumo_json(_record(("a@example.com",)))
    assert rendered["meta"] == {"tenant": "t", "campaign": None, "weight": 3, "tags": ["a", "b"]}
    assert rendered["headers"] == {"Subject": "hi"}


def test_optional_fields_appear_when_known_and_are_left_out_otherwise() -> None:
    full = to_kumo_json(_full(("a@example.com",)))
    assert full["tls_cipher"] == "TLS_AES_256_GCM_SHA384"
    assert full["tls_protocol_version"] == "TLSv1.3"
    assert full["tls_peer_subject_name"] == ["C=US", "CN=mx1.example.com"]
    assert full["source_address"] == {"address": "10.0.0.1:53210"}
    assert full["session_id"] == "9bcd689e-23d9-41b7-a015-63a1382f8b57"
    assert full["feedback_report"] == {"feedback_type": "abuse"}
    bare = to_kumo_json(_record(("a@example.com",)))
    optional = {"tls_cipher", "tls_protocol_version", "tls_peer_subject_name"}
    assert not optional & set(bare)
    assert bare["source_address"] is None and bare["feedback_report"] is None


def test_a_record_without_a_node_id_shows_the_nil_uuid() -> None:
    rendered = to_kumo_json(dataclasses.replace(_record(("a@example.com",)), nodeid=""))
    assert rendered["nodeid"] == "00000000-0000-0000-0000-000000000000"


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC), "2026-03-01T12:00:05Z"),
        (datetime(2026, 3, 1, 12, 0, 5, 250000, tzinfo=UTC), "2026-03-01T12:00:05.250Z"),
        (datetime(2026, 3, 1, 12, 0, 5, 250001, tzinfo=UTC), "2026-03-01T12:00:05.250001Z"),
    ],
)
def test_times_are_written_as_chrono_writes_them(moment: datetime, text: str) -> None:
    assert rfc3339(moment) == text


@given(st.datetimes(timezones=st.just(UTC)))
def test_the_rfc3339_time_is_the_unix_timestamp_to_the_second(moment: datetime) -> None:
    text = rfc3339(moment)
    assert datetime.fromisoformat(text) == moment
    seconds = unix_seconds(moment)
    # In whole microseconds: total_seconds() is a float, which rounds up to the next second
    # for dates a thousand years out.
    micros = (moment - EPOCH) // timedelta(microseconds=1)
    assert seconds * 1_000_000 <= micros < (seconds + 1) * 1_000_000


def test_full_records_round_trip_through_avro() -> None:
    schema = registry().current("LogRecord").parsed
    record = _full(("a@example.com",))
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, record.to_avro())
    buffer.seek(0)
    restored = LogRecord.from_avro(fastavro.schemaless_reader(buffer, schema, schema))
    assert restored == dataclasses.replace(record, response=restored.response)


def test_the_writer_stamps_its_node_id_and_classifies_failures_only() -> None:
    from relaystream.core.domain.bounce_class import BounceClassifier

    writer = LogWriter(
        "557f3ad4-2c8c-11ee-976e-782d7e12e173",
        BounceClassifier.compile([("rules.toml", {"QuotaIssues": [r"^451 4\.7\.1 "]})]),
    )
    failure = writer.stamp(dataclasses.replace(_record(("a@example.com",)), nodeid=""))
    assert failure.nodeid == "557f3ad4-2c8c-11ee-976e-782d7e12e173"
    assert failure.bounce_classification == "QuotaIssues"
    delivery = writer.stamp(
        dataclasses.replace(_record(("a@example.com",)), type=RecordType.DELIVERY)
    )
    assert delivery.bounce_classification == "Uncategorized"


def _future_log_record_schema(released: int | None) -> dict[str, Any]:
    """LogRecord as a later release that adds a record type (KumoMTA's XferOut) would be."""
    source = copy.deepcopy(
        dict(
            registry().current("LogRecord").source
            if released is None
            else registry().released("LogRecord")[released].source
        )
    )
    source["fields"][0]["type"]["symbols"].append("XferOut")
    return source


@pytest.mark.parametrize(("reader_version", "survives"), [(1, False), (2, True)])
def test_readers_since_v2_survive_a_record_type_they_do_not_know(
    reader_version: int, survives: bool
) -> None:
    """v1's enum had no default: its readers fail on a new type; v2 onwards read Delayed."""
    writer = fastavro.parse_schema(_future_log_record_schema(None), named_schemas={})
    reader = registry().released("LogRecord")[reader_version].parsed
    value = dataclasses.replace(_record(("a@example.com",))).to_avro() | {"type": "XferOut"}
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, writer, value)
    buffer.seek(0)
    if not survives:
        with pytest.raises(Exception, match="XferOut"):
            fastavro.schemaless_reader(buffer, writer, reader)
        return
    decoded = fastavro.schemaless_reader(buffer, writer, reader)
    assert isinstance(decoded, dict)
    assert decoded["type"] == "Delayed"
