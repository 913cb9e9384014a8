"""Applying `DeliveryOutcome`s to the partition they belong to.

`outcomes` is co-partitioned with `queued`: the outcome of a message released from `queued`
partition p arrives on `outcomes` partition p and is applied to that partition's scheduler,
once per (message id, attempt) (`SchedulerState.accept_outcome`):

- DELIVERED / BOUNCE: the message's tombstone;
- TRANSIENT_FAILURE: the message requeued with backoff (`core.domain.retry`), or expired after
  max_age (an Expiration log record, then the tombstone).

The partition notes the outcomes' offsets only after those writes are acknowledged; the service
commits them from there. Applying again what was applied (re-read after a restart or a
rebalance) finds the attempt already moved on and does nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..core.domain.log_record import RecordType
from ..core.domain.retry import Expire, RandomSource, decide_after_transient_failure
from ..core.events.codec import DecodeError, decode, encode
from ..core.kafka.dead_letter import RecordRejected
from ..core.spool.entry import SpoolEntry
from ..core.spool.reader import SpoolReader
from . import metrics
from .config_resolver import QueueConfigResolver, QueueConfigUnavailable
from .log_records import message_log_record
from .owned import OwnedPartitions
from .partition import PartitionScheduler
from .writes import SchedulingWrites

log = logging.getLogger(__name__)


def _datetime(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, UTC)


class OutcomeApplier:
    def __init__(
        self,
        partitions: OwnedPartitions,
        writes: SchedulingWrites,
        spool: SpoolReader,
        configs: QueueConfigResolver,
        *,
        now_ms: Callable[[], int],
        random: RandomSource,
    ) -> None:
        self._partitions = partitions
        self._writes = writes
        self._spool = spool
        self._configs = configs
        self._now_ms = now_ms
        self._random = random

    async def apply(self, partition: PartitionScheduler, records: list[Any]) -> None:
        """Applies one `outcomes` partition's records to its `queued` partition's scheduler."""
        state = partition.state
        accepted: list[tuple[SpoolEntry, dict[str, Any]]] = []
        for record in records:
            if record.value is None:
                continue
            try:
                _, outcome = decode(record.value, "DeliveryOutcome")
            except DecodeError as error:
                await self._writes.dead_letter_record(
                    record, RecordRejected(error.reason, "decode")
                )
                continue
            entry = state.accept_outcome(outcome["id"], outcome["attempt"])
            if entry is not None:
                accepted.append((entry, dict(outcome)))
        transient = [(e, o) for e, o in accepted if o["kind"] == "TRANSIENT_FAILURE"]
        messages = await self._spool.fetch((e.partition, e.offset) for e, _ in transient)
        writes = []
        for entry, outcome in accepted:
            if outcome["kind"] == "TRANSIENT_FAILURE":
                record = messages.get((entry.partition, entry.offset))
                if record is None or record.value is None:
                    state.outcome_failed(entry.id, entry.attempts)
                    continue
                if await self._writes.decode_queued(entry, record.value, self._forget) is None:
                    continue
                writes.append(self.retry_or_expire(entry, record.value, outcome))
            else:
                writes.append(self._complete(entry, outcome["kind"]))
        results = await asyncio.gather(*writes, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            # Not noted: the outcomes are read again after the restart.
            raise failures[0]
        if records:
            partition.outcomes_applied(max(r.offset for r in records) + 1)

    def _forget(self, entry: SpoolEntry) -> None:
        self._partitions.forget(entry)

    def _failed(self, entry: SpoolEntry) -> None:
        held = self._partitions.get(entry.partition)
        if held is not None:
            held.state.outcome_failed(entry.id, entry.attempts)

    async def _complete(self, entry: SpoolEntry, kind: str) -> None:
        try:
            await self._writes.tombstone(entry)
        except Exception:
            self._failed(entry)
            raise
        metrics.COMPLETIONS.labels(kind).inc()

    async def retry_or_expire(
        self, entry: SpoolEntry, value: bytes, outcome: dict[str, Any]
    ) -> None:
        """A transient failure of `entry` (also a suspended queue's due message): requeued
        with the next backoff, or expired."""
        _, message = decode(value, "QueuedMessage")
        now = self._now_ms()
        try:
            config = self._configs.resolve(entry.queue)
        except QueueConfigUnavailable:
            # No config to judge the retry by: the outcome is applied again once the queue
            # has one (the message waits in flight, held with its queue).
            self._failed(entry)
            return
        plan = decide_after_transient_failure(
            attempts=entry.attempts,
            created_at=message["created_at"],
            now=_datetime(now),
            config=config,
            random=self._random,
        )
        try:
            if isinstance(plan, Expire):
                await self._expire(entry, dict(message), plan, now)
                metrics.EXPIRATIONS.inc()
                return
            updated = {
                **message,
                "due_at": plan.next_due,
                "attempts": plan.attempts,
                "last_response": outcome["response"],
            }
            await self._writes.queued(entry.id, encode("QueuedMessage", updated), entry.partition)
            metrics.REQUEUES.inc()
        except Exception:
            self._failed(entry)
            raise

    async def _expire(
        self, entry: SpoolEntry, message: dict[str, Any], plan: Expire, now_ms: int
    ) -> None:
        record = message_log_record(
            RecordType.EXPIRATION,
            message,
            queue=entry.queue,
            response=plan.response,
            now_ms=now_ms,
            num_attempts=plan.attempts,
        )
        # The log record first: if the tombstone then fails, the retry logs it again
        # (at-least-once), rather than removing a message without a trace.
        await self._writes.log(entry.id, record)
        await self._writes.tombstone(entry)
