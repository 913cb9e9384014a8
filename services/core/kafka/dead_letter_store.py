"""Dead letters as an operator sees them: list, show, drop and re-inject (`relaystream
dead-letters`).

The `dead-letter` topic is compacted and keyed by each dead letter's id, its source record's
`topic/partition/offset` (dead_letter.py): the latest record of an id is the dead letter, a
tombstone resolves it. Reading replays the whole topic outside any consumer group.

- drop: the record is discarded. Its dead letter is tombstoned; when its source topic is
  compacted and the poison record is still the latest of its key there, the source key is
  tombstoned first, so the services that re-read that topic on every start (the scheduler's
  spool rebuild, the queue-config and admin followers) do not dead-letter it again. (Its key's
  value was already gone: the poison record had replaced it.)
- reinject: the original key and value go back to the source topic and partition (the cause
  was fixed: a policy, a schema, a bug), then the dead letter is tombstoned. Should the record
  still fail, it is dead-lettered again under its new offset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from ..events.codec import DecodeError, decode
from .dead_letter import DEAD_LETTER_SCHEMA
from .producer import Delivered, EventProducer
from .replay import ReplayedRecord, replay_topic
from .topics import CleanupPolicy, TopicCatalog

CLIENT_ID = "relaystream-dead-letters"

UndecodableHandler = Callable[[ReplayedRecord, str], None]


class DeadLetterNotFound(LookupError):
    """No (unresolved) dead letter has that id."""


@dataclass(frozen=True)
class StoredDeadLetter:
    """One unresolved dead letter: where it came from, why, and the record's bytes."""

    id: str
    source_topic: str
    source_partition: int
    source_offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    error_type: str
    service: str
    failed_at: datetime


def _ignore(record: ReplayedRecord, reason: str) -> None:
    return None


def _stored(record: ReplayedRecord) -> StoredDeadLetter:
    assert record.value is not None and record.key is not None
    _, event = decode(record.value, expected=DEAD_LETTER_SCHEMA)
    return StoredDeadLetter(
        id=record.key.decode("utf-8", "replace"),
        source_topic=event["source_topic"],
        source_partition=event["source_partition"],
        source_offset=event["source_offset"],
        key=event["key"],
        value=event["value"],
        reason=event["reason"],
        error_type=event["error_type"],
        service=event["service"],
        failed_at=event["failed_at"],
    )


async def list_dead_letters(
    bootstrap: str, topic: str, *, on_undecodable: UndecodableHandler = _ignore
) -> list[StoredDeadLetter]:
    """Every unresolved dead letter, oldest failure first."""
    current: dict[bytes | None, StoredDeadLetter] = {}
    async for record in replay_topic(bootstrap, topic, client_id=CLIENT_ID):
        if record.value is None:
            current.pop(record.key, None)
            continue
        if record.key is None:
            on_undecodable(record, "a dead letter without an id (key)")
            continue
        try:
            current[record.key] = _stored(record)
        except DecodeError as error:
            on_undecodable(record, error.reason)
    return sorted(current.values(), key=lambda d: (d.failed_at, d.id))


async def find_dead_letter(bootstrap: str, topic: str, dead_letter_id: str) -> StoredDeadLetter:
    for dead in await list_dead_letters(bootstrap, topic):
        if dead.id == dead_letter_id:
            return dead
    raise DeadLetterNotFound(f"no dead letter {dead_letter_id!r}")


async def _superseded(bootstrap: str, tp: TopicPartition, key: bytes, offset: int) -> bool:
    """Whether a later record of `key` follows `offset` in `tp` (read up to its end now)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id=CLIENT_ID,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        consumer.seek(tp, offset + 1)
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            if any(r.key == key and r.offset < end for r in batch.get(tp, [])):
                return True
    finally:
        await consumer.stop()
    return False


@dataclass(frozen=True)
class Resolution:
    """What a drop or re-injection wrote."""

    dead_letter: StoredDeadLetter
    source_write: Delivered | None  # the re-injected record, or the source tombstone of a drop


def _compacted(topics: TopicCatalog, topic: str) -> bool:
    return any(s.name == topic and s.cleanup_policy is CleanupPolicy.COMPACT for s in topics)


async def drop_dead_letter(bootstrap: str, topics: TopicCatalog, dead_letter_id: str) -> Resolution:
    """Discards a dead letter (see the module doc)."""
    dead = await find_dead_letter(bootstrap, topics.dead_letter.name, dead_letter_id)
    source_write = None
    async with EventProducer(bootstrap, client_id=CLIENT_ID) as producer:
        if dead.key is not None and _compacted(topics, dead.source_topic):
            tp = TopicPartition(dead.source_topic, dead.source_partition)
            if not await _superseded(bootstrap, tp, dead.key, dead.source_offset):
                source_write = await producer.send(
                    dead.source_topic, None, key=dead.key, partition=dead.source_partition
                )
        await producer.send(topics.dead_letter.name, None, key=dead.id)
    return Resolution(dead, source_write)


async def reinject_dead_letter(
    bootstrap: str, topics: TopicCatalog, dead_letter_id: str
) -> Resolution:
    """Produces the original record back to its source topic and partition, then resolves
    the dead letter (in that order: a failure in between leaves it listed, never lost)."""
    dead = await find_dead_letter(bootstrap, topics.dead_letter.name, dead_letter_id)
    if dead.value is None:
        raise ValueError(f"dead letter {dead.id} holds no value to re-inject")
    async with EventProducer(bootstrap, client_id=CLIENT_ID) as producer:
        written = await producer.send(
            dead.source_topic, dead.value, key=dead.key, partition=dead.source_partition
        )
        await producer.send(topics.dead_letter.name, None, key=dead.id)
    return Resolution(dead, written)


def as_json(dead: StoredDeadLetter) -> dict[str, Any]:
    """The listing fields of a dead letter (no bytes), for `--json`."""
    return {
        "id": dead.id,
        "source_topic": dead.source_topic,
        "source_partition": dead.source_partition,
        "source_offset": dead.source_offset,
        "service": dead.service,
        "error_type": dead.error_type,
        "reason": dead.reason,
        "failed_at": dead.failed_at.isoformat(),
        "key": None if dead.key is None else dead.key.decode("utf-8", "replace"),
        "value_bytes": None if dead.value is None else len(dead.value),
    }
