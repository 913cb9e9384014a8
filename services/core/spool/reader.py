"""Fetching `queued` records by (partition, offset) when their messages become due.

The scheduler's index holds no content, so releasing a message reads its latest record back
from the spool. A dedicated consumer (manual assignment, no group) seeks to the lowest wanted
offset of each partition and reads forward; wanted offsets close together (the usual case:
messages queued together fall due together) come in the same fetches, and a jump further than
`SEEK_GAP` offsets seeks again instead of reading what lies between.

Two costs are kept off each call (both showed in profiles under load): the assignment only
grows (every `assign` refreshes metadata), and partitions not being fetched stay paused, so the
reader does not long-poll the end of the log between calls. A fetch still in flight when a call
seeks delays the new fetch until it returns: `fetch_max_wait_ms` is kept short for that reason
(idle partitions are paused, so a short wait costs no polling).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from aiokafka import TopicPartition

from ..kafka.partition_reader import reader_consumer

SEEK_GAP = 2_000
_FETCH_TIMEOUT_MS = 2_000
_FETCH_MAX_WAIT_MS = 20


class SpoolReader:
    """Reads records of one topic by offset; `await start()` before use, `stop()` after."""

    def __init__(self, bootstrap: str, topic: str, *, client_id: str) -> None:
        self._topic = topic
        self._consumer: Any = reader_consumer(
            bootstrap, client_id, max_poll_records=2_000, fetch_max_wait_ms=_FETCH_MAX_WAIT_MS
        )
        self._lock = asyncio.Lock()
        self._assigned: set[TopicPartition] = set()

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def fetch(self, wanted: Iterable[tuple[int, int]]) -> dict[tuple[int, int], Any]:
        """The records at the wanted (partition, offset)s; a missing one is left out."""
        by_partition: dict[int, set[int]] = {}
        for partition, offset in wanted:
            by_partition.setdefault(partition, set()).add(offset)
        found: dict[tuple[int, int], Any] = {}
        async with self._lock:
            tps = {TopicPartition(self._topic, p) for p in by_partition}
            if not tps <= self._assigned:
                self._assigned |= tps
                self._consumer.assign(list(self._assigned))
                self._consumer.pause(*self._assigned)
            # Only the partitions of this call fetch; the rest stay paused.
            self._consumer.resume(*tps)
            try:
                for partition, offsets in by_partition.items():
                    await self._fetch_partition(partition, offsets, found)
            finally:
                self._consumer.pause(*tps)
        return found

    async def _fetch_partition(
        self, partition: int, offsets: set[int], found: dict[tuple[int, int], Any]
    ) -> None:
        tp = TopicPartition(self._topic, partition)
        pending = sorted(offsets)
        position: int | None = None
        index = 0
        while index < len(pending):
            target = pending[index]
            if position is None or target < position or target - position > SEEK_GAP:
                self._consumer.seek(tp, target)
                position = target
            batch = await self._consumer.getmany(tp, timeout_ms=_FETCH_TIMEOUT_MS)
            records = batch.get(tp, [])
            if not records:
                # Nothing at or after the target (it was compacted away or is beyond the
                # end): give up on it, the index will be corrected by a newer record.
                index += 1
                position = None
                continue
            for record in records:
                if record.offset in offsets:
                    found[(partition, record.offset)] = record
            position = records[-1].offset + 1
            while index < len(pending) and pending[index] < position:
                index += 1
