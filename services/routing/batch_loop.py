"""Consume, route, produce and commit the consumed offsets in one Kafka transaction per batch.

Each turn takes a batch from `accepted` (read_committed), routes every record (router.py),
begins a transaction, sends every outgoing record, adds the batch's next offsets to the
transaction (`send_offsets_to_transaction`) and commits. Outputs and consumed offsets become
visible together or not at all.

Failures: any error while producing or committing aborts the transaction (best effort) and
stops the service with TransactionFailed; the restarted instance resumes from the offsets of
the last committed transaction and routes the batch again. Why not retry in place: after a
refused record aiokafka's idempotent producer keeps the refused batch's sequence number, so
every later send to that partition fails with OutOfOrderSequenceNumber (seen against Kafka
4.1); only a new producer (init_transactions under the same transactional id, which also
fences this one and aborts its open transaction) is usable again, which a restart gives with
no state to repair. aiokafka would also commit a transaction even when one of its records was
refused, so every send's acknowledgement is awaited before the commit.

Rebalances: `on_partitions_revoked` waits for the transaction in progress to end before the
partitions go, so the next owner reads offsets that include it. A batch fetched while a
rebalance was under way (its first fetch, or the linger's second one) may mix records of the
old and the new assignment: it is dropped unprocessed, and every partition it took records
from that is still assigned is rewound to its committed offset. Without the rewind the
consumer's position stays past the dropped records and the next transaction commits past
them: accepted mail that is never routed (found by a fault run with two instances).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from ..core.kafka import metrics as kafka_metrics
from ..core.kafka.batches import send_in_batches
from ..core.kafka.rewind import rewind_to_committed
from . import metrics
from .router import Routed, Router

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 200
# Readiness: the loop must have polled this recently (a batch takes well under this).
POLL_STALE_SECONDS = 60.0
# After a batch arrives, the loop waits this long for more records before routing it: at low
# load records trickle in one by one and each transaction costs the broker a commit and
# transaction markers whatever its size.
BATCH_LINGER_SECONDS = 0.03
# The best-effort abort before stopping; a restart under the same transactional id aborts anyway.
ABORT_TIMEOUT_SECONDS = 10.0

Batch = dict[TopicPartition, list[Any]]


class TransactionFailed(RuntimeError):
    """A batch's transaction failed: the service must restart to route the batch again."""


class _Rebalances(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, loop: BatchLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._loop.partitions_revoked()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._loop.partitions_assigned(assigned)


class BatchLoop:
    """The exactly-once loop; subscribe the consumer with `listener` before starting it."""

    def __init__(
        self,
        *,
        consumer: Any,
        producer: Any,
        router: Router,
        group: str,
        max_records: int,
        linger: float = BATCH_LINGER_SECONDS,
    ) -> None:
        self._consumer = consumer
        self._producer = producer
        self._router = router
        self._group = group
        self._max_records = max_records
        self._linger = linger
        # Held from begin_transaction until the transaction committed or aborted.
        self._transaction = asyncio.Lock()
        # Counts rebalances: a batch fetched across one is dropped.
        self._epoch = 0
        self._assignment: frozenset[TopicPartition] | None = None
        self._last_poll = 0.0
        self.listener: ConsumerRebalanceListener = _Rebalances(self)

    # -- rebalances and readiness -----------------------------------------------------------

    async def partitions_revoked(self) -> None:
        self._epoch += 1
        self._assignment = None
        async with self._transaction:
            pass  # the transaction in progress ended: its offsets are committed or dropped

    def partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._epoch += 1
        self._assignment = frozenset(assigned)
        log.info(
            "partitions assigned", extra={"partitions": sorted(tp.partition for tp in assigned)}
        )

    def ready(self) -> bool:
        """Assigned (possibly nothing, with more instances than partitions) and polling."""
        polling = time.monotonic() - self._last_poll < POLL_STALE_SECONDS
        return self._assignment is not None and polling

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Route batches until `stop` is set; the batch in progress is finished first.

        Raises TransactionFailed when a batch could not be committed.
        """
        while not stop.is_set():
            epoch = self._epoch
            batch: Batch = await self._consumer.getmany(
                timeout_ms=POLL_TIMEOUT_MS, max_records=self._max_records
            )
            self._last_poll = time.monotonic()
            if not batch:
                continue
            batch = await self._fill(batch)
            async with self._transaction:
                if epoch != self._epoch:
                    await self._drop(batch)
                    continue
                await self._route_batch(batch)

    async def _drop(self, batch: Batch) -> None:
        """Give a batch fetched across a rebalance back: its records are fetched again."""
        await rewind_to_committed(self._consumer, batch, group=self._group)
        log.info(
            "batch dropped and rewound: partitions were reassigned while it was fetched",
            extra={
                "records": sum(len(records) for records in batch.values()),
                "partitions": sorted(tp.partition for tp in batch),
            },
        )

    async def _fill(self, batch: Batch) -> Batch:
        """Add the records that arrive within the linger, up to `max_records` in all."""
        room = self._max_records - sum(len(records) for records in batch.values())
        if room <= 0 or self._linger <= 0:
            return batch
        await asyncio.sleep(self._linger)
        more: Batch = await self._consumer.getmany(timeout_ms=0, max_records=room)
        for tp, records in more.items():
            batch.setdefault(tp, []).extend(records)  # fetched after, so later offsets
        return batch

    async def _route_batch(self, batch: Batch) -> None:
        routed = [self._router.route(record) for records in batch.values() for record in records]
        offsets = {
            tp: OffsetAndMetadata(records[-1].offset + 1, "") for tp, records in batch.items()
        }
        producer = self._producer
        await producer.begin_transaction()
        try:
            await self._send_all(routed)
            await producer.send_offsets_to_transaction(offsets, self._group)
            await producer.commit_transaction()
        except Exception as error:
            metrics.TRANSACTIONS.labels("aborted").inc()
            await self._abort()
            raise TransactionFailed(
                f"routing transaction of {len(routed)} records failed: {error!r}; "
                "restart to route the batch again"
            ) from error
        metrics.TRANSACTIONS.labels("committed").inc()
        self._count(batch, routed)

    async def _send_all(self, routed: list[Routed]) -> None:
        records = [out for result in routed for out in result.outgoing]
        # Handing a batch over only enqueues it; its future resolves on the acknowledgement.
        acknowledgements = await send_in_batches(self._producer, records)
        results = await asyncio.gather(*acknowledgements, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _abort(self) -> None:
        """Best effort: readers of the outputs need not wait for the broker's timeout."""
        try:
            await asyncio.wait_for(self._producer.abort_transaction(), ABORT_TIMEOUT_SECONDS)
        except Exception as error:  # a committing or fenced transaction cannot be aborted
            log.warning("aborting the routing transaction failed", extra={"error": repr(error)})

    def _count(self, batch: Batch, routed: list[Routed]) -> None:
        sources = [record for records in batch.values() for record in records]
        for record, result in zip(sources, routed, strict=True):
            if result.outcome is not None:
                metrics.DECISIONS.labels(result.outcome).inc()
            for rejection in result.rejections:
                kafka_metrics.DEAD_LETTERED_RECORDS.labels(self._group, record.topic).inc()
                log.warning(
                    "record dead-lettered",
                    extra={
                        "source_topic": record.topic,
                        "source_partition": record.partition,
                        "source_offset": record.offset,
                        "error_type": rejection.error_type,
                        "reason": rejection.reason,
                    },
                )
