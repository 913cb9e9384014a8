"""KumoMTA-shaped JSON log records and the Avro form."""

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import fastavro

from relaystream.core.domain.log_record import LogRecord, PeerAddress, RecordType, to_kumo_json
from relaystream.core.domain.smtp_reply import EnhancedStatusCode, SmtpResponse

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
WHEN = datetime(2026, 3, 1, 12, 0, 5, 250000, tzinfo=UTC)
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
        meta={"tenant": "t"},
        headers={"Subject": "hi"},
        nodeid="node-1",
    )


def test_one_recipient_renders_as_a_string() -> None:
    rendered = to_kumo_json(_record(("r@example.com",)))
    assert rendered["recipient"] == "r@example.com"
    assert rendered["type"] == "TransientFailure"
    assert rendered["timestamp"] == int(WHEN.timestamp())
    assert rendered["event_time"] == "2026-03-01T12:00:05.250000Z"
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
