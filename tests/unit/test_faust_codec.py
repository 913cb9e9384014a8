"""The Faust codec for relaystream's events (relaystream.integrations.faust_codec): what Faust
sends through it is exactly what the services' own codec writes, and bad input is refused."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from importlib.metadata import entry_points
from typing import Any

import faust
import pytest
from avro_strategies import record_strategy
from faust.serializers import codecs
from hypothesis import given, settings

from relaystream.core.events.codec import DecodeError, EncodeError, decode, encode, registry
from relaystream.core.kafka.submission import submission_event
from relaystream.integrations.faust_codec import CODEC_NAME, RelaystreamEventCodec

SUBMITTED = dict(registry().current("MessageSubmitted").source)


def test_faust_finds_the_codec_by_name_through_the_entry_point() -> None:
    [declared] = [entry for entry in entry_points(group="faust.codecs") if entry.name == CODEC_NAME]
    assert declared.load() is RelaystreamEventCodec
    assert isinstance(codecs.get_codec(CODEC_NAME), RelaystreamEventCodec)


@settings(max_examples=50)
@given(record_strategy(SUBMITTED))
def test_faust_writes_what_the_services_write_and_reads_it_back(record: dict[str, Any]) -> None:
    data = codecs.dumps(CODEC_NAME, record)
    assert data == encode("MessageSubmitted", record)
    assert codecs.loads(CODEC_NAME, data) == decode(data, expected="MessageSubmitted")[1]


def test_a_chained_codec_keeps_the_event() -> None:
    event = submission_event("a@example.com", ["b@example.org"], b"Subject: x\r\n\r\nhi\r\n")
    chained = codecs.get_codec(f"{CODEC_NAME}|binary")  # Avro, then base64 (Faust's clone)
    data = chained.dumps(event)
    assert data == base64.b64encode(encode("MessageSubmitted", event))
    assert chained.loads(data) == decode(base64.b64decode(data), expected="MessageSubmitted")[1]


class Submission(faust.Record):
    submission_id: str
    sender: str
    recipients: list[str]
    content: bytes
    meta: dict[str, str]
    submitted_at: datetime


def test_a_faust_record_is_written_without_faust_metadata() -> None:
    at = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    record = Submission("s-1", "a@example.com", ["b@example.org"], b"Subject: x\r\n\r\n", {}, at)
    assert "__faust" in record.to_representation()
    event = submission_event(
        "a@example.com", ["b@example.org"], b"Subject: x\r\n\r\n", submission_id="s-1"
    )
    event["submitted_at"] = at
    assert codecs.dumps(CODEC_NAME, record) == encode("MessageSubmitted", event)


def test_what_does_not_fit_the_schema_is_refused_naming_the_problem() -> None:
    event: dict[str, Any] = dict(
        submission_event("a@example.com", ["b@example.org"], b"Subject: x\r\n\r\nhi\r\n")
    )
    del event["recipients"]
    with pytest.raises(EncodeError, match="recipients"):
        codecs.dumps(CODEC_NAME, event)
    with pytest.raises(TypeError, match="mapping"):
        codecs.dumps(CODEC_NAME, "a string")
    other = encode(
        "MessageSubmitted",
        submission_event("a@example.com", ["b@example.org"], b"x"),
    )
    with pytest.raises(DecodeError):
        RelaystreamEventCodec(event="MessageAccepted").loads(other)
    with pytest.raises(DecodeError):
        codecs.loads(CODEC_NAME, b"not an event")
