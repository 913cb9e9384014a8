"""Reads a compacted control topic in full, then follows it live, for every instance.

Queue-config overrides and operator rules may concern queues of any partition, and the admin
API reports every ready queue, so every instance (of scheduling, and of delivery for the ready
queue suspensions) reads all partitions of these topics from the beginning (manual assignment,
no group, no commits). `caught_up` is set once every record present at start was applied: the
service acts on nothing before that, so a restart never acts on stale config.

A record that does not decode or validate (`apply` raises RecordRejected, having removed its
key's current value: compaction will keep it, not the value it replaced) goes to the
dead-letter topic. Records read before the follower caught up are dead-lettered only if still
the latest of their key then: every start re-reads the topic, and a poison record superseded
since (by the tombstone `relaystream dead-letters drop` writes) must not come back. One that
is not superseded is dead-lettered again under the same id, which the compacted dead-letter
topic keeps once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import TopicPartition

from .dead_letter import DeadLetters, PoisonRecord, RecordRejected, poison_of
from .partition_reader import reader_consumer

log = logging.getLogger(__name__)

# (key, value) of one record; value None is a tombstone. Raises RecordRejected for a record
# that does not decode or validate.
ApplyRecord = Callable[[bytes | None, bytes | None], object]


class TopicFollower:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        apply: ApplyRecord,
        *,
        client_id: str,
        what: str,
        dead_letters: DeadLetters,
        group: str,
    ) -> None:
        self._topic = topic
        self._dead_letters = dead_letters
        self._group = group
        # Rejected records not dead-lettered yet, by (partition, key or offset if keyless).
        self._poison: dict[tuple[int, bytes | int], tuple[PoisonRecord, RecordRejected]] = {}
        self._partitions = partitions
        self._apply = apply
        self._what = what
        self._consumer: Any = reader_consumer(
            bootstrap, client_id, fetch_max_wait_ms=100, metadata_max_age_ms=30_000
        )
        self._task: asyncio.Task[None] | None = None
        self.caught_up = asyncio.Event()

    async def start(self) -> None:
        await self._consumer.start()
        tps = [TopicPartition(self._topic, p) for p in range(self._partitions)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        ends: dict[TopicPartition, int] = await self._consumer.end_offsets(tps) if tps else {}
        self._task = asyncio.create_task(self._follow(ends))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    async def _follow(self, ends: dict[TopicPartition, int]) -> None:
        pending = dict(ends)
        while True:
            for tp in list(pending):
                if await self._consumer.position(tp) >= pending[tp]:
                    del pending[tp]
            if not pending and not self.caught_up.is_set():
                self.caught_up.set()
                log.info("control topic loaded", extra={"topic": self._topic, "what": self._what})
            if self.caught_up.is_set():
                await self._send_poison()
            batch = await self._consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    self._apply_one(record)

    def _apply_one(self, record: Any) -> None:
        where = (record.partition, record.key if record.key is not None else record.offset)
        self._poison.pop(where, None)
        try:
            self._apply(record.key, record.value)
        except RecordRejected as rejected:
            self._poison[where] = (poison_of(record), rejected)

    async def _send_poison(self) -> None:
        for where, (poison, rejection) in list(self._poison.items()):
            try:
                await self._dead_letters.send(poison, rejection, group=self._group)
            except Exception as error:  # Kafka unavailable: try again on the next pass
                log.error(
                    "dead-lettering failed: will retry",
                    extra={"topic": self._topic, "error": repr(error)},
                )
                return
            del self._poison[where]
