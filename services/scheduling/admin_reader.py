"""Reads the compacted `admin` topic in full, then follows it live (operator rules).

Like the queue-config overrides: every instance needs every rule (a rule may match queues of
any partition), so this is a plain reader of all partitions from the beginning (manual
assignment, no group, no commits). `caught_up` is set once everything present at start was
applied: the service releases nothing before that, so a restart never delivers a message of a
suspended or bounced queue. New rules are also queued on `arrived` for the service's loop,
which applies bounces and rebinds to the messages waiting at that moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import TopicPartition

from ..core.domain.admin_rules import AdminRule, AdminRuleSet
from ..core.events.codec import DecodeError
from ..core.kafka.admin_commands import apply_record
from .rebuild import reader_consumer

log = logging.getLogger(__name__)


class AdminRulesReader:
    def __init__(
        self, bootstrap: str, topic: str, partitions: int, rules: AdminRuleSet, *, client_id: str
    ) -> None:
        self._topic = topic
        self._partitions = partitions
        self.rules = rules
        self._consumer: Any = reader_consumer(
            bootstrap, client_id, fetch_max_wait_ms=100, metadata_max_age_ms=30_000
        )
        self._task: asyncio.Task[None] | None = None
        self.caught_up = asyncio.Event()
        # Rules read (at start and live), for the loop to apply to waiting messages.
        self.arrived: list[AdminRule] = []
        self.wake = asyncio.Event()

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

    def take_arrived(self) -> list[AdminRule]:
        arrived, self.arrived = self.arrived, []
        return arrived

    async def _follow(self, ends: dict[TopicPartition, int]) -> None:
        pending = dict(ends)
        while True:
            for tp in list(pending):
                if await self._consumer.position(tp) >= pending[tp]:
                    del pending[tp]
            if not pending and not self.caught_up.is_set():
                self.caught_up.set()
                log.info("admin rules loaded", extra={"rules": len(self.rules)})
            batch = await self._consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    self._apply(record)

    def _apply(self, record: Any) -> None:
        try:
            rule = apply_record(self.rules, record.key, record.value)
        except (DecodeError, ValueError) as error:
            log.warning("undecodable admin record skipped", extra={"reason": str(error)})
            return
        if rule is not None:
            log.info("admin rule read", extra={"id": rule.id, "action": rule.action.value})
            self.arrived.append(rule)
            self.wake.set()
