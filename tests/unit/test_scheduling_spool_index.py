"""The hand-walked QueuedMessage decoder agrees with the codec on any record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relaystream.core.events.codec import DecodeError, encode
from relaystream.scheduling.spool_index import SpoolIndexDecoder

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
millis = st.integers(0, 2**42)


@settings(max_examples=200, deadline=None)
@given(
    message_id=st.text(max_size=40),
    queue=st.text(max_size=60),
    content=st.binary(max_size=3000),
    meta=st.dictionaries(st.text(max_size=20), st.text(max_size=200), max_size=8),
    created_at=millis,
    due_at=millis,
    attempts=st.integers(0, 2**31 - 1),
)
def test_index_decoder_matches_the_record(
    message_id: str,
    queue: str,
    content: bytes,
    meta: dict[str, str],
    created_at: int,
    due_at: int,
    attempts: int,
) -> None:
    record = {
        "id": message_id,
        "queue": queue,
        "sender": "s@example.com",
        "recipient": "r@example.com",
        "content": content,
        "meta": meta,
        "created_at": EPOCH + timedelta(milliseconds=created_at),
        "due_at": EPOCH + timedelta(milliseconds=due_at),
        "attempts": attempts,
        "last_response": None,
    }
    entry = SpoolIndexDecoder().decode(3, 42, encode("QueuedMessage", record))
    assert (entry.id, entry.queue, entry.attempts) == (message_id, queue, attempts)
    assert (entry.created_at, entry.due_at) == (created_at, due_at)
    assert (entry.partition, entry.offset) == (3, 42)


def test_other_events_and_garbage_are_rejected() -> None:
    decoder = SpoolIndexDecoder()
    override = encode(
        "QueueConfigOverride",
        {"target": "x", "config": "{}", "updated_at": EPOCH, "updated_by": "t", "reason": None},
    )
    with pytest.raises(DecodeError):
        decoder.decode(0, 0, override)
    with pytest.raises(DecodeError):
        decoder.decode(0, 0, b"\xc3\x01garbage")
