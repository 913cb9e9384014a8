"""The hand-walked QueuedMessage decoder agrees with the codec on any record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relaystream.core.events.codec import HEADER_SIZE, DecodeError, decode, encode
from relaystream.core.spool.index import SpoolIndexDecoder

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


def queued_message(**overrides: object) -> dict[str, object]:
    record: dict[str, object] = {
        "id": "m-1",
        "queue": "campaign:tenant@example.com",
        "sender": "s@example.com",
        "recipient": "r@example.com",
        "content": b"Subject: hi\r\n\r\nbody\r\n",
        "meta": {"tenant": "t", "campaign": "c"},
        "created_at": EPOCH + timedelta(seconds=1),
        "due_at": EPOCH + timedelta(seconds=2),
        "attempts": 1,
        "last_response": {
            "code": 451,
            "enhanced_code": {"class": 4, "subject": 3, "detail": 0},
            "content": "later",
            "command": "RCPT TO",
        },
    }
    record.update(overrides)
    return record


def full_decode_refuses(value: bytes) -> bool:
    try:
        decode(value, "QueuedMessage")
    except DecodeError:
        return True
    return False


@st.composite
def mutated_records(draw: st.DrawFn) -> bytes:
    """A valid QueuedMessage with bytes flipped, cut off, inserted or appended."""
    value = bytearray(
        encode(
            "QueuedMessage",
            queued_message(
                sender=draw(st.text(max_size=12)),
                meta=draw(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)),
                last_response=draw(st.sampled_from([None, queued_message()["last_response"]])),
            ),
        )
    )
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "append"]))
        # The 10-byte header stays: other tests cover it; the body is what the walk reads.
        where = draw(st.integers(HEADER_SIZE, max(HEADER_SIZE, len(value) - 1)))
        if kind == "flip" and where < len(value):
            value[where] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del value[where:]
        elif kind == "insert":
            value[where:where] = draw(st.binary(min_size=1, max_size=4))
        else:
            value += draw(st.binary(min_size=1, max_size=4))
    return bytes(value)


@settings(max_examples=3000, deadline=None)
@given(value=mutated_records())
def test_the_index_refuses_every_record_the_full_decode_refuses(value: bytes) -> None:
    """The crash loop of issue 16: a record indexed, then refused when released. Whatever the
    walk accepts, the codec decodes to the same id, queue and times."""
    try:
        entry = SpoolIndexDecoder().decode(0, 7, value)
    except DecodeError:
        return
    assert not full_decode_refuses(value), value.hex()
    _, record = decode(value, "QueuedMessage")
    assert (entry.id, entry.queue, entry.attempts) == (
        record["id"],
        record["queue"],
        record["attempts"],
    )
    # Exact milliseconds: a float timestamp before 1970 truncates the wrong way.
    assert entry.due_at == (record["due_at"] - EPOCH) // timedelta(milliseconds=1)


def test_an_invalid_utf8_sender_is_refused_at_index_time() -> None:
    """The finding's record: valid Avro but for one string, which the walk used to skip."""
    value = bytearray(encode("QueuedMessage", queued_message(sender="s@example.com")))
    value[value.index(b"s@example.com")] = 0xFF
    assert full_decode_refuses(bytes(value))
    with pytest.raises(DecodeError, match="utf-8"):
        SpoolIndexDecoder().decode(0, 0, bytes(value))


def test_records_of_the_current_schema_take_the_fast_walk() -> None:
    """The rebuild's speed depends on it: when QueuedMessage changes, teach the walk."""
    value = encode("QueuedMessage", queued_message())
    assert SpoolIndexDecoder()._is_fast(value[2:HEADER_SIZE])
