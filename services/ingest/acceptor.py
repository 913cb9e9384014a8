"""Accepted mail goes to Kafka all or nothing: one Kafka transaction per batch of receptions.

Why a transaction: a reception (an SMTP transaction, an HTTP request, a submission) with several
recipients becomes several MessageAccepted records. If only some of them were stored and the
client were told 451, it would retry the whole reception, and the recipients whose records did
land would get the mail twice (the retry gets new message ids, so nothing downstream can tell
the copies apart). With a transaction the records of a reception become visible together or not
at all, provided the readers of `accepted` use `isolation_level="read_committed"` (aborted
records are otherwise visible to them).

Throughput: a producer runs one transaction at a time and a commit costs a few round trips, so
receptions queue here and each transaction carries every reception waiting when it starts
(group commit), after a short linger so that receptions arriving together share it. A failed
transaction fails every reception in it; none of their records become visible.

Failure: a transaction that has not committed `ack_timeout` after its oldest reception arrived
is given up. The producer is then discarded and the next batch starts a new one with the same
transactional id, which fences the old producer and makes the broker abort its open transaction.
A commit whose acknowledgement was lost (committed, but reported as failed) is the one case
where a reception answered 451 did land; SMTP has the same window after the final dot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer

from ..core.events.codec import encode
from ..core.events.records import MessageAccepted
from ..core.kafka.batches import Outgoing, send_in_batches
from ..core.kafka.producer import MAX_BATCH_SIZE, best_compression
from ..core.kafka.topics import CONTENT_MAX_MESSAGE_BYTES
from . import metrics

log = logging.getLogger(__name__)

# A transaction carries at most this many value bytes (more receptions wait for the next one).
MAX_TRANSACTION_BYTES = 64 * 1024 * 1024
# The transaction loop waits this long after the first reception arrives before taking the
# batch, so receptions arriving together share one transaction (each costs the broker an
# AddPartitionsToTxn, a commit and transaction markers); small against an SMTP round trip.
BATCH_LINGER_SECONDS = 0.005
# How long a discarded producer gets to stop before it is left to the garbage collector.
_DISCARD_SECONDS = 5.0
_STARTUP_SECONDS = 60.0


class AcceptanceFailed(Exception):
    """Kafka did not take the reception: the client must be told to retry (451, 503)."""


@dataclass
class _Reception:
    records: list[tuple[str, bytes]]  # (message id, encoded MessageAccepted)
    enqueued_at: float
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def size(self) -> int:
        return sum(len(value) for _, value in self.records)


class TransactionalAcceptor:
    """Produces the MessageAccepted events of each reception atomically; see the module doc."""

    def __init__(
        self,
        bootstrap: str,
        *,
        topic: str,
        transactional_id: str,
        client_id: str,
        ack_timeout: float,
        max_transaction_bytes: int = MAX_TRANSACTION_BYTES,
        batch_linger: float = BATCH_LINGER_SECONDS,
    ) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._transactional_id = transactional_id
        self._client_id = client_id
        self._ack_timeout = ack_timeout
        self._max_transaction_bytes = max_transaction_bytes
        self._batch_linger = batch_linger
        self._producer: Any = None
        self._partitions = 1  # of the topic, read when the producer starts
        self._next_partition = 0
        self._pending: list[_Reception] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._worker: asyncio.Task[None] | None = None
        self._discarding: set[asyncio.Task[None]] = set()

    @property
    def topic(self) -> str:
        return self._topic

    async def start(self) -> None:
        """Connect and initialise the transactional producer; raises if Kafka does not answer."""
        # Not bounded by ack_timeout: the broker's first transactional producer waits for it
        # to create its transaction-state topic.
        await asyncio.wait_for(self._ready_producer(), max(self._ack_timeout, _STARTUP_SECONDS))
        self._worker = asyncio.create_task(self._run(), name="accepted-transactions")

    async def stop(self) -> None:
        """Commit what is queued, then close."""
        self._closing = True
        self._wake.set()
        if self._worker is not None:
            await self._worker
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()
        if self._discarding:
            await asyncio.wait(self._discarding, timeout=_DISCARD_SECONDS)

    async def accept(self, events: Sequence[MessageAccepted]) -> None:
        """Return once every event is committed to `accepted`; AcceptanceFailed otherwise.

        Raises ValueError (codec EncodeError) for an event that does not fit the schema.
        """
        if self._closing or self._worker is None:
            raise AcceptanceFailed("ingest is shutting down")
        records = [(event["id"], encode("MessageAccepted", event)) for event in events]
        reception = _Reception(records=records, enqueued_at=time.monotonic())
        self._pending.append(reception)
        self._wake.set()
        # Shielded: a client that hangs up must not cancel a transaction shared with others.
        await asyncio.shield(reception.done)

    # -- the transaction loop -------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if not self._closing:
                await asyncio.sleep(self._batch_linger)
            self._wake.clear()
            while self._pending:
                await self._commit(self._take_batch())
            if self._closing:
                return

    def _take_batch(self) -> list[_Reception]:
        batch: list[_Reception] = []
        size = 0
        while self._pending:
            reception = self._pending[0]
            if batch and size + reception.size > self._max_transaction_bytes:
                break
            batch.append(self._pending.pop(0))
            size += reception.size
        return batch

    async def _commit(self, batch: list[_Reception]) -> None:
        deadline = min(reception.enqueued_at for reception in batch) + self._ack_timeout
        try:
            await self._commit_before(batch, deadline)
        except Exception as error:
            reason = _describe(error)
            log.warning(
                "accepted messages not committed",
                extra={"receptions": len(batch), "error": reason},
            )
            metrics.KAFKA_TRANSACTIONS.labels("failed").inc()
            self._settle(batch, "failed", AcceptanceFailed(reason))
            self._discard_producer()
            return
        metrics.KAFKA_TRANSACTIONS.labels("committed").inc()
        self._settle(batch, "committed", None)

    async def _commit_before(self, batch: list[_Reception], deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("waited too long for an earlier transaction")
        # The transaction runs in its own task so a timeout never waits on aiokafka's own
        # cleanup (an abort against an unreachable broker would hang).
        task = asyncio.create_task(self._transaction(batch))
        done, _ = await asyncio.wait({task}, timeout=remaining)
        if not done:
            task.cancel()
            self._discarding.add(task)
            task.add_done_callback(self._discarding.discard)
            raise TimeoutError(f"no acknowledgement within {self._ack_timeout:g} s")
        task.result()

    async def _transaction(self, batch: list[_Reception]) -> None:
        producer = await self._ready_producer()
        # The whole transaction goes to one partition, the next transaction to the next one:
        # its commit then writes one transaction marker instead of one per partition, and it
        # goes out as one batch in one produce request. Routing reads every partition alike.
        self._next_partition = partition = (self._next_partition + 1) % self._partitions
        records = [
            Outgoing(self._topic, partition, message_id.encode(), value)
            for reception in batch
            for message_id, value in reception.records
        ]
        async with producer.transaction():
            acknowledgements = await send_in_batches(producer, records)
            # Every batch must be acknowledged before the commit: aiokafka commits a
            # transaction even when one of its records was refused (say, too large), which
            # would make the others visible. Raising here aborts the transaction instead.
            await asyncio.gather(*acknowledgements)

    def _settle(self, batch: list[_Reception], result: str, error: Exception | None) -> None:
        now = time.monotonic()
        for reception in batch:
            metrics.KAFKA_ACK_SECONDS.labels(result).observe(now - reception.enqueued_at)
            if reception.done.done():
                continue
            if error is None:
                reception.done.set_result(None)
            else:
                reception.done.set_exception(error)

    # -- the producer ---------------------------------------------------------------------

    async def _ready_producer(self) -> Any:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                client_id=self._client_id,
                transactional_id=self._transactional_id,
                enable_idempotence=True,
                acks="all",
                compression_type=best_compression(),
                max_request_size=CONTENT_MAX_MESSAGE_BYTES,
                # aiokafka's default (16 KiB) held one 10 KB message per batch, so a
                # transaction went out in several produce and AddPartitionsToTxn requests.
                max_batch_size=MAX_BATCH_SIZE,
                linger_ms=0,
                # A transaction left open by a vanished producer blocks read_committed readers
                # until the broker aborts it; a fenced one is aborted at once.
                transaction_timeout_ms=int(max(2 * self._ack_timeout, 10.0) * 1000),
                request_timeout_ms=int(max(self._ack_timeout, 1.0) * 1000),
            )
            try:
                await producer.start()
                self._partitions = len(await producer.partitions_for(self._topic))
            except BaseException:
                self._stop_in_background(producer)
                raise
            self._producer = producer
        return self._producer

    def _discard_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            self._stop_in_background(producer)

    def _stop_in_background(self, producer: Any) -> None:
        async def stop() -> None:
            with contextlib.suppress(Exception, asyncio.TimeoutError):
                await asyncio.wait_for(producer.stop(), _DISCARD_SECONDS)

        task = asyncio.create_task(stop())
        self._discarding.add(task)
        task.add_done_callback(self._discarding.discard)


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__
