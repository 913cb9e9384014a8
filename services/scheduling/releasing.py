"""Releasing due messages: each becomes a `DeliveryRequest` on `attempts`, on its partition.

The request carries the message (fetched back from the spool by offset: the index holds no
content) and its queue's resolved config as JSON. A message read from `queued` already due is
released from the record just read ("in hand", kept only until the end of that loop pass)
instead of being fetched back. An operator rule holding the queue turns the release into a
bounce or a suspension (`admin_actions`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..core.domain.admin_rules import AdminAction
from ..core.domain.token_bucket import MessageRate
from ..core.events.codec import encode
from ..core.kafka.producer import EventProducer
from ..core.spool.entry import SpoolEntry
from ..core.spool.reader import SpoolReader
from . import metrics
from .admin_actions import OperatorActions
from .config_resolver import QueueConfigResolver, QueueConfigUnavailable, message_rate_of
from .owned import OwnedPartitions
from .writes import SchedulingWrites

log = logging.getLogger(__name__)

RELEASE_BATCH = 500


class Releaser:
    def __init__(
        self,
        partitions: OwnedPartitions,
        *,
        producer: EventProducer,
        attempts_topic: str,
        writes: SchedulingWrites,
        spool: SpoolReader,
        configs: QueueConfigResolver,
        actions: OperatorActions,
        now_ms: Callable[[], int],
    ) -> None:
        self._partitions = partitions
        self._producer = producer
        self._attempts_topic = attempts_topic
        self._writes = writes
        self._spool = spool
        self._configs = configs
        self._actions = actions
        self._now_ms = now_ms
        # Values of `queued` records read in this loop pass that were due when indexed, by
        # (partition, offset): released without fetching them back. Cleared every pass, so
        # waiting messages never keep their content in memory.
        self._in_hand: dict[tuple[int, int], bytes] = {}

    def hold(self, entry: SpoolEntry, value: bytes) -> None:
        """`value` is `entry`'s record, just read and already due: release it from there."""
        self._in_hand[(entry.partition, entry.offset)] = value

    def end_of_pass(self) -> None:
        self._in_hand.clear()

    def _rate_of(self, queue: str) -> MessageRate | None:
        return message_rate_of(self._configs.resolve(queue))

    async def release_due(self) -> None:
        while True:
            now = self._now_ms()
            due = self._partitions.take_due(now, RELEASE_BATCH, self._rate_of)
            if not due:
                return
            values = await self.fetch_queued(due)
            sends = []
            for entry in due:
                value = values.get((entry.partition, entry.offset))
                if value is None:
                    # Superseded meanwhile: the newer record re-schedules it. It stays in
                    # flight until then (or until the lease ends).
                    log.warning("released record not found", extra={"id": entry.id})
                    continue
                message = await self._writes.decode_queued(entry, value, self._partitions.forget)
                if message is None:
                    continue
                rule = self._actions.rule_for_release(entry.queue, now)
                if rule is None:
                    sends.append(self._send_request(entry, message, now))
                elif rule.action is AdminAction.BOUNCE:
                    sends.append(self._actions.bounce([entry], rule))
                else:
                    sends.append(self._actions.suspend(entry, value, rule))
            results = await asyncio.gather(*sends, return_exceptions=True)
            failures = [r for r in results if isinstance(r, BaseException)]
            if failures:
                raise failures[0]
            if len(due) < RELEASE_BATCH:
                return

    async def fetch_queued(self, entries: list[SpoolEntry]) -> dict[tuple[int, int], bytes]:
        """The `queued` record values of `entries` by (partition, offset): from the records in
        hand, else fetched back from the spool; a missing (compacted, tombstoned) one is left
        out."""
        values: dict[tuple[int, int], bytes] = {}
        wanted: list[tuple[int, int]] = []
        for entry in entries:
            where = (entry.partition, entry.offset)
            value = self._in_hand.get(where)
            if value is None:
                wanted.append(where)
            else:
                values[where] = value
        if wanted:
            metrics.SPOOL_FETCHES.inc(len(wanted))
            for where, record in (await self._spool.fetch(wanted)).items():
                if record.value is not None:
                    values[where] = record.value
        return values

    async def _send_request(self, entry: SpoolEntry, message: dict[str, Any], now_ms: int) -> None:
        try:
            config = self._configs.resolve(entry.queue)
        except QueueConfigUnavailable:
            # The config failed since take_due resolved it (an override change dropped the
            # cache): the message waits again, held with its queue.
            self._partitions.release_failed(entry)
            return
        request = {
            "id": entry.id,
            "queue": entry.queue,
            "attempt": entry.attempts,
            "sender": message["sender"],
            "recipient": message["recipient"],
            "content": message["content"],
            "meta": message["meta"],
            "created_at": message["created_at"],
            "queue_config": config.to_json(),
            "released_at": datetime.fromtimestamp(now_ms / 1000, UTC),
        }
        try:
            await self._producer.send(
                self._attempts_topic,
                encode("DeliveryRequest", request),
                key=entry.id,
                partition=entry.partition,
            )
        except Exception:
            self._partitions.release_failed(entry)
            raise
        metrics.RELEASES.inc()
