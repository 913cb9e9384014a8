"""Building one partition's scheduler from Kafka when the partition is newly assigned.

1. `core.spool.snapshot.read_spool`: the `queued` partition, as an index (no content).
2. `read_recent_attempts`: the `attempts` partition from `now - lease` (by timestamp) to its
   end: a request whose attempt is still the message's current one is in flight until its
   lease runs out (a restart must not release it again meanwhile).

Both read outside any consumer group (nothing committed) with large fetches; the memory the
read freed is then handed back to the system. Outcomes are not read here: the group consumer
resumes `outcomes` from its committed offsets after the rebuild, and applying an outcome is
idempotent per (message id, attempt).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..core.events.codec import DecodeError, decode
from ..core.kafka.dead_letter import PoisonRecord, RecordRejected
from ..core.kafka.partition_reader import read_since
from ..core.kafka.topics import TopicCatalog
from ..core.runtime.memory import collection_paused, release_free_memory
from ..core.spool.snapshot import read_spool
from .partition import PartitionScheduler
from .state import SchedulerState


@dataclass(frozen=True)
class RecentAttempt:
    message_id: str
    attempt: int
    released_at: int


async def read_recent_attempts(
    bootstrap: str,
    topic: str,
    partitions: Iterable[int],
    *,
    since_ms: int,
    client_id: str,
) -> list[RecentAttempt]:
    """DeliveryRequests in `topic`'s `partitions` with a timestamp at or after `since_ms`."""
    found: list[RecentAttempt] = []

    def apply(record: Any) -> None:
        if record.value is None:
            return
        try:
            _, request = decode(record.value, "DeliveryRequest")
        except DecodeError:
            return
        released_at = int(request["released_at"].timestamp() * 1000)
        found.append(RecentAttempt(request["id"], request["attempt"], released_at))

    await read_since(
        bootstrap, topic, partitions, since_ms=since_ms, on_record=apply, client_id=client_id
    )
    return found


@dataclass
class BuiltPartition:
    """A partition's scheduler as read from Kafka, and the poison records its spool holds
    (still the latest of their keys: to dead-letter)."""

    scheduler: PartitionScheduler
    poison: list[tuple[PoisonRecord, RecordRejected]]
    records_read: int


async def build_partition(
    partition: int,
    *,
    bootstrap: str,
    topics: TopicCatalog,
    lease_ms: int,
    now_ms: int,
    client_id: str,
) -> BuiltPartition:
    """Reads `queued` partition `partition` and the recent releases of its `attempts`
    partition (see the module doc) into a new `PartitionScheduler`."""
    started = time.monotonic()
    with collection_paused():  # millions of live entries, no cycles: see core.runtime.memory
        snapshot = await read_spool(bootstrap, topics.queued.name, [partition], client_id=client_id)
        state = SchedulerState(lease_ms)
        state.load_bulk(snapshot.entries)
    recent = await read_recent_attempts(
        bootstrap,
        topics.attempts.name,
        [partition],
        since_ms=now_ms - lease_ms,
        client_id=client_id,
    )
    for attempt in recent:
        state.note_attempt(attempt.message_id, attempt.attempt, attempt.released_at)
    # The read went through a gigabyte of fetch buffers and records for 1M messages: without
    # this the process keeps that peak resident (see core.runtime.memory).
    release_free_memory()
    scheduler = PartitionScheduler(
        partition,
        state,
        snapshot.end_offsets.get(partition, 0),
        build_seconds=time.monotonic() - started,
    )
    return BuiltPartition(scheduler, snapshot.poison, snapshot.records_read)
