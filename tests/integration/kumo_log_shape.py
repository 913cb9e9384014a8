"""KumoMTA's JSON log record shape (tests/fixtures/kumomta_log_record.schema.json) and its
field order, for checking what `relaystream logs --json` prints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "fixtures" / "kumomta_log_record.schema.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())

# JsonLogRecord's fields in declaration order, as serde writes them (the flattened timestamps
# each followed by their RFC 3339 twin); the optional tail appears only when set.
FIELD_ORDER = (
    "type", "id", "sender", "recipient", "queue", "site", "size", "response", "peer_address",
    "timestamp", "event_time", "created", "created_time", "num_attempts",
    "bounce_classification", "egress_pool", "egress_source", "source_address",
    "feedback_report", "meta", "headers", "delivery_protocol", "reception_protocol", "nodeid",
    "tls_cipher", "tls_protocol_version", "tls_peer_subject_name", "provider_name", "session_id",
)  # fmt: skip


def assert_kumo_shape(record: dict[str, Any]) -> None:
    """Fails unless `record` is a valid KumoMTA log record with its fields in KumoMTA's order."""
    jsonschema.validate(record, SCHEMA)
    present = [name for name in FIELD_ORDER if name in record]
    assert list(record) == present, f"fields out of KumoMTA's order: {list(record)}"
