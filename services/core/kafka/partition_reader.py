"""Reading given partitions outside any consumer group: look-backs by time (recent attempts).

A reader consumer is assigned partitions by hand, commits nothing and reads only committed
records (routing writes `queued` in transactions: an aborted batch must never be read back).
`read_to` reads each partition up to end offsets fixed when the read starts, so a read ends
even while producers keep writing; `read_since` reads what was written from a time on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

# Readers take whole partitions: big fetches, many records per poll.
FETCH_MAX_BYTES = 64 * 1024 * 1024
MAX_PARTITION_FETCH_BYTES = 16 * 1024 * 1024
MAX_POLL_RECORDS = 50_000
# A read yields to the event loop this often (here and in the spool rebuild): a service
# rebuilding some partitions in the background keeps serving the others meanwhile.
YIELD_EVERY_RECORDS = 2_000

OnRecord = Callable[[Any], None]


def reader_consumer(bootstrap: str, client_id: str, **overrides: Any) -> Any:
    """A consumer for manual assignment: no group, no commits."""
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "client_id": client_id,
        "group_id": None,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "fetch_max_bytes": FETCH_MAX_BYTES,
        "max_partition_fetch_bytes": MAX_PARTITION_FETCH_BYTES,
        "isolation_level": "read_committed",
    }
    options.update(overrides)
    return AIOKafkaConsumer(**options)


async def read_to(consumer: Any, ends: dict[TopicPartition, int], on_record: OnRecord) -> int:
    """Feeds every record below `ends` to `on_record`; returns how many were read."""
    remaining = {tp for tp, end in ends.items() if await consumer.position(tp) < end}
    read = 0
    while remaining:
        batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=MAX_POLL_RECORDS)
        for tp, records in batch.items():
            end = ends[tp]
            for record in records:
                if record.offset >= end:
                    break
                on_record(record)
                read += 1
                if read % YIELD_EVERY_RECORDS == 0:
                    await asyncio.sleep(0)
        for tp in list(remaining):
            if await consumer.position(tp) >= ends[tp]:
                remaining.discard(tp)
    return read


async def read_since(
    bootstrap: str,
    topic: str,
    partitions: Iterable[int],
    *,
    since_ms: int,
    on_record: OnRecord,
    client_id: str,
    max_poll_records: int = 10_000,
) -> int:
    """Feeds `on_record` every record of `topic`'s `partitions` from the first one stamped at
    or after `since_ms` to the end offsets of when the read started; returns how many."""
    tps = [TopicPartition(topic, p) for p in sorted(set(partitions))]
    if not tps:
        return 0
    consumer = reader_consumer(bootstrap, client_id, max_poll_records=max_poll_records)
    await consumer.start()
    try:
        consumer.assign(tps)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        starts = await consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
        for tp in tps:
            start = starts.get(tp)
            # No record at or after `since_ms`: nothing that recent, start at the end.
            consumer.seek(tp, start.offset if start is not None else ends[tp])
        return await read_to(consumer, ends, on_record)
    finally:
        await consumer.stop()
