"""Consume, transform, produce and commit the consumed offsets in one Kafka transaction per batch.

Each turn takes a batch (read_committed), transforms every record into the records to produce
(`Outgoing`, partitions chosen), begins a transaction, sends them, adds the batch's next offsets
to the transaction (`send_offsets_to_transaction`) and commits. Outputs and consumed offsets
become visible together or not at all. Routing (an `accepted` record -> its decision, spool and
log records) and ingest's `submit` consumer (a submission -> its MessageAccepted records) both
run this loop.

Failures: any error while producing or committing aborts the transaction (best effort) and
raises TransactionFailed; the batch must then be transformed again by a new producer: routing
exits and is restarted, ingest replaces the producer and calls `restart` (ingest/submit_loop.py).
Why not retry with the same producer: after a refused record aiokafka's idempotent producer
keeps the refused batch's sequence number, so every later send to that partition fails with
OutOfOrderSequenceNumber (seen against Kafka 4.1); only a new producer (init_transactions under
the same transactional id, which also fences the old one and aborts its open transaction) is
usable again. aiokafka would also commit a transaction even when one of its records was
refused, so every send's acknowledgement is awaited before the commit.

Rebalances: `on_partitions_revoked` waits for the transaction in progress to end before the
partitions go, so the next owner reads offsets that include it. A batch fetched while a
rebalance was under way (its first fetch, or the linger's second one) may mix records of the
old and the new assignment: it is dropped unprocessed, and every partition it took records
from that is still assigned is rewound to its committed offset. Without the rewind the
consumer's position stays past the dropped records and the next transaction commits past
them: accepted mail that is never routed (found by a fault run with two routing instances).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from . import metrics
from .batches import Outgoing, send_in_batches
from .consumer import HEARTBEAT_INTERVAL_MS, SESSION_TIMEOUT_MS
from .dead_letter import RecordRejected, note_dead_lettered
from .producer import MAX_BATCH_SIZE, MAX_REQUEST_SIZE, compression_type
from .rewind import rewind_to_committed

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 200
# Readiness: the loop must have polled this recently (a batch takes well under this).
POLL_STALE_SECONDS = 60.0
# After a batch arrives, the loop waits this long for more records before transforming it: at
# low load records trickle in one by one and each transaction costs the broker a commit and
# transaction markers whatever its size.
BATCH_LINGER_SECONDS = 0.03
# The best-effort abort after a failure; a new producer under the same transactional id
# aborts anyway.
ABORT_TIMEOUT_SECONDS = 10.0

Batch = dict[TopicPartition, list[Any]]


class Transformed(Protocol):
    """What one consumed record becomes: the records to produce, and the reasons it was
    dead-lettered (logged and counted once the transaction committed)."""

    @property
    def outgoing(self) -> Sequence[Outgoing]: ...

    @property
    def rejections(self) -> Sequence[RecordRejected]: ...


T = TypeVar("T", bound=Transformed)


class TransactionFailed(RuntimeError):
    """A batch's transaction failed: it must be transformed again under a new producer."""


def transactional_consumer(
    *, bootstrap: str, group_id: str, group_instance_id: str | None, client_id: str
) -> Any:
    """A consumer for the loop: offsets committed only inside its transactions."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        group_id=group_id,
        group_instance_id=group_instance_id,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
        # Upstream writers use transactions: never act on an aborted record.
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )


def transactional_producer(
    *, bootstrap: str, transactional_id: str, client_id: str, transaction_timeout_ms: int
) -> Any:
    """A producer for the loop. `transaction_timeout_ms`: how long the broker keeps a
    transaction open for a producer that vanished and did not come back under its id
    (read_committed readers wait for it until then)."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        transactional_id=transactional_id,
        enable_idempotence=True,
        acks="all",
        compression_type=compression_type(),
        # The batches are whole when handed over (send_in_batches) and their acknowledgements
        # are awaited before the commit: a linger would only delay every transaction.
        linger_ms=0,
        max_batch_size=MAX_BATCH_SIZE,
        max_request_size=MAX_REQUEST_SIZE,
        transaction_timeout_ms=transaction_timeout_ms,
    )


class _Rebalances(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, loop: TransactionalLoop[Any]) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._loop.partitions_revoked()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._loop.partitions_assigned(assigned)


class TransactionalLoop(Generic[T]):
    """The exactly-once loop; subscribe the consumer with `listener` before starting it.

    `transform(record)` must not do I/O (it runs between fetch and transaction; a record it
    cannot handle becomes a dead-letter record in its result). `committed(records, results)`
    is called after each commit, for the caller's metrics. `offload`, when given, runs a
    batch's transforms off the event loop (ingest: on a thread of its own, as the transform
    runs the policy); a rebalance waits for the batch either way.
    """

    def __init__(
        self,
        *,
        consumer: Any,
        producer: Any,
        transform: Callable[[Any], T],
        group: str,
        max_records: int,
        committed: Callable[[Sequence[Any], Sequence[T]], None] | None = None,
        linger: float = BATCH_LINGER_SECONDS,
        offload: Callable[[Callable[[], list[T]]], Awaitable[list[T]]] | None = None,
    ) -> None:
        self._consumer = consumer
        self._offload = offload
        self._producer = producer
        self._transform = transform
        self._group = group
        self._max_records = max_records
        self._committed = committed
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
            "partitions assigned",
            extra={"group": self._group, "partitions": sorted(tp.partition for tp in assigned)},
        )

    def ready(self) -> bool:
        """Assigned (possibly nothing, with more instances than partitions) and polling."""
        polling = time.monotonic() - self._last_poll < POLL_STALE_SECONDS
        return self._assignment is not None and polling

    async def restart(self, producer: Any) -> None:
        """Go on after TransactionFailed with `producer`, a new one under the same
        transactional id (started: its init_transactions settled the failed transaction).

        Every assigned partition goes back to its committed offset: the failed batch's
        records were fetched, so the consumer's position stands past them."""
        async with self._transaction:
            self._producer = producer
            self._epoch += 1  # a batch fetched before now is dropped too
            await rewind_to_committed(
                self._consumer, self._consumer.assignment(), group=self._group
            )

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Transform batches until `stop` is set; the batch in progress is finished first.

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
                await self._commit_batch(batch)

    async def _drop(self, batch: Batch) -> None:
        """Give a batch fetched across a rebalance back: its records are fetched again."""
        await rewind_to_committed(self._consumer, batch, group=self._group)
        log.info(
            "batch dropped and rewound: partitions were reassigned while it was fetched",
            extra={
                "group": self._group,
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

    async def _commit_batch(self, batch: Batch) -> None:
        sources = [record for records in batch.values() for record in records]

        def transform_all() -> list[T]:
            return [self._transform(record) for record in sources]

        results = transform_all() if self._offload is None else await self._offload(transform_all)
        try:
            await transact(
                self._producer,
                self._consumer,
                self._group,
                batch,
                [out for result in results for out in result.outgoing],
            )
        except Exception as error:
            metrics.TRANSACTIONS.labels(self._group, "aborted").inc()
            raise TransactionFailed(
                f"transaction of {len(sources)} records of group {self._group} failed: "
                f"{error!r}; they will be consumed again"
            ) from error
        metrics.TRANSACTIONS.labels(self._group, "committed").inc()
        self._count_rejections(sources, results)
        if self._committed is not None:
            self._committed(sources, results)

    def _count_rejections(self, sources: Sequence[Any], results: Sequence[T]) -> None:
        for record, result in zip(sources, results, strict=True):
            for rejection in result.rejections:
                note_dead_lettered(
                    self._group, record.topic, record.partition, record.offset, rejection
                )


async def transact(
    producer: Any, consumer: Any, group: str, batch: Batch, outgoing: Sequence[Outgoing]
) -> None:
    """`outgoing` and the batch's next offsets in one transaction of `producer`, committed only
    while `consumer` is still the group's member for the batch's partitions. Raises on any
    failure, after a best-effort abort.

    Why the membership check: aiokafka's TxnOffsetCommit (v0) carries no group generation, so
    the group coordinator takes the offsets of a member it expelled. Once the transaction's
    records are on the broker, the broker's transaction timeout fences a member that then goes
    silent (core/kafka/fencing.py). A member that went silent before, while it transformed the
    batch, would begin its transaction after its partitions moved, and nothing would stop it:
    so, with the records sent, the batch's first offsets are committed once more through the
    consumer, whose OffsetCommit carries the generation and is refused from an expelled member.
    Nothing is skipped by it: below a batch's first offset stand only records a read_committed
    consumer never sees (transaction markers, aborted records).
    """
    await producer.begin_transaction()
    try:
        await _send_all(producer, outgoing)
        await consumer.commit(
            {tp: OffsetAndMetadata(records[0].offset, "") for tp, records in batch.items()}
        )
        await producer.send_offsets_to_transaction(
            {tp: OffsetAndMetadata(records[-1].offset + 1, "") for tp, records in batch.items()},
            group,
        )
        await producer.commit_transaction()
    except Exception:
        await _abort(producer, group)
        raise


async def _send_all(producer: Any, records: Sequence[Outgoing]) -> None:
    # Handing a batch over only enqueues it; its future resolves on the acknowledgement.
    acknowledgements = await send_in_batches(producer, records)
    results = await asyncio.gather(*acknowledgements, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def _abort(producer: Any, group: str) -> None:
    """Best effort: readers of the outputs need not wait for the broker's timeout."""
    try:
        await asyncio.wait_for(producer.abort_transaction(), ABORT_TIMEOUT_SECONDS)
    except Exception as error:  # a committing or fenced transaction cannot be aborted
        log.warning("aborting the transaction failed", extra={"group": group, "error": repr(error)})
