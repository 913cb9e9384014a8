"""Reading a whole topic outside any consumer group: audits, `relaystream logs`, broadcasts.

`replay_topic` assigns every partition of a topic, starts at the beginning (or at the first
offset at or after `since`, via offsets_for_times), and stops at the end offsets it saw when it
started, unless `follow` is set, in which case it keeps reading new records until cancelled.
Records come in per-partition order; partitions are interleaved as Kafka returns them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from .admin import describe_topics


@dataclass(frozen=True)
class ReplayedRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None


@dataclass
class ReplayProgress:
    """How far a replay is: records read of the records that stood below the end offsets."""

    total: int = 0
    read: int = 0


async def _start_offsets(
    consumer: Any, partitions: list[TopicPartition], since: datetime | None
) -> dict[TopicPartition, int]:
    beginnings: dict[TopicPartition, int] = await consumer.beginning_offsets(partitions)
    if since is None:
        return beginnings
    found = await consumer.offsets_for_times(
        {tp: int(since.timestamp() * 1000) for tp in partitions}
    )
    ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
    return {tp: (found[tp].offset if found.get(tp) is not None else ends[tp]) for tp in partitions}


async def replay_topic(
    bootstrap: str,
    topic: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    follow: bool = False,
    progress: ReplayProgress | None = None,
    client_id: str = "relaystream-replay",
) -> AsyncIterator[ReplayedRecord]:
    """Yield the records of `topic` from `since` (or the beginning) to the end offsets seen at
    the start (or forever with `follow`); records stamped after `until` are skipped."""
    described = await describe_topics(bootstrap, [topic])
    if topic not in described:
        raise LookupError(f"topic {topic!r} does not exist")
    partitions = [TopicPartition(topic, p) for p in range(described[topic].partitions)]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        enable_auto_commit=False,
        group_id=None,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        starts = await _start_offsets(consumer, partitions, since)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        for tp, offset in starts.items():
            consumer.seek(tp, offset)
        remaining = {tp for tp in partitions if follow or starts[tp] < ends[tp]}
        if progress is not None:
            progress.total = sum(max(0, ends[tp] - starts[tp]) for tp in partitions)
        until_ms = None if until is None else int(until.timestamp() * 1000)
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=500)
            for tp, records in batches.items():
                for record in records:
                    if not follow and record.offset >= ends[tp]:
                        break
                    if progress is not None:
                        progress.read += 1
                    if until_ms is not None and record.timestamp > until_ms:
                        continue
                    yield ReplayedRecord(
                        topic=tp.topic,
                        partition=tp.partition,
                        offset=record.offset,
                        timestamp_ms=record.timestamp,
                        key=record.key,
                        value=record.value,
                    )
            if not follow:
                # Compaction leaves gaps: a partition is done once its position reaches the end.
                for tp in list(remaining):
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
    finally:
        await consumer.stop()
