"""Reads the compacted `queue-config` topic in full, then follows it live.

Every scheduling instance needs every override (any queue may be assigned to it), so this is a
plain reader of all partitions from the beginning (manual assignment, no group, no commits).
`caught_up` is set once everything present at start was applied: the service releases nothing
before that, so a restart never releases with a config older than the topic's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import TopicPartition

from ..core.events.codec import DecodeError, decode
from .config_resolver import QueueConfigResolver
from .rebuild import reader_consumer

log = logging.getLogger(__name__)


class QueueConfigOverridesReader:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        resolver: QueueConfigResolver,
        *,
        client_id: str,
    ) -> None:
        self._topic = topic
        self._partitions = partitions
        self._resolver = resolver
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
                log.info("queue-config overrides loaded")
            batch = await self._consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    self._apply(record)

    def _apply(self, record: Any) -> None:
        target = record.key.decode("utf-8", "replace") if record.key is not None else None
        if record.value is None:
            if target is not None:
                self._resolver.set_override(target, None)
            return
        try:
            _, override = decode(record.value, "QueueConfigOverride")
        except DecodeError as error:
            log.warning("undecodable queue-config record skipped", extra={"reason": error.reason})
            return
        self._resolver.set_override(override["target"], override["config"])
        log.info("queue-config override applied", extra={"target": override["target"]})
