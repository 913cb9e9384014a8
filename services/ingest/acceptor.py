"""Accepted mail goes to Kafka all or nothing, a batch of receptions per write.

Why all or nothing: a reception (an SMTP transaction, an HTTP request, a submission) with
several recipients becomes several MessageAccepted records. If only some of them were stored
and the client were told 451, it would retry the whole reception, and the recipients whose
records did land would get the mail twice (the retry gets new message ids, so nothing
downstream can tell the copies apart).

How: Kafka appends a record batch to its partition as one unit, and the idempotent producer's
retries of a batch are dropped as duplicates, so the records of one batch land together or not
at all. The receptions waiting are packed whole into batches (`pack_receptions`), each batch to
the next partition of `accepted`, after a short linger so that receptions arriving together
share one (group commit). A batch is one produce request. Only a reception with several records
too large for one batch (a big message to many recipients) takes a Kafka transaction, on a
second producer started when first needed; readers of `accepted` use
`isolation_level="read_committed"`, so an aborted one stays invisible. Why not a transaction for
every batch, as before: on the 2-core benchmark VM a transaction cost the broker 3 to 10 ms of
CPU (AddPartitionsToTxn, EndTxn, three transaction-log writes, a marker) against about 0.5 ms
for a produce, and two more round trips before the reply. Without them the broker's CPU per
message fell by a third and relaystream's rate against Postfix's rose from about 1.0 to 1.13.

Failure: a write not acknowledged `ack_timeout` after its oldest reception arrived, or refused,
fails every reception in it (451/503). Its producer is abandoned (`abandon`: what it still
holds is dropped, never delivered later) and the next write starts a new one. A discarded
transactional producer is replaced at once: the replacement's same transactional id fences it
and the broker aborts its open transaction. A plain batch cannot be aborted: one that reached
the broker but whose acknowledgement did not come back in time (a slow broker, not a down one)
lands although its receptions were answered 451, and a client's retry makes a second copy.
SMTP has the same window after the final dot; nothing accepted is lost.
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
from ..core.kafka.producer import MAX_BATCH_SIZE, compression_type
from ..core.kafka.topics import CONTENT_MAX_MESSAGE_BYTES
from . import metrics
from .reception_packing import pack_receptions

log = logging.getLogger(__name__)

# Receptions are packed into record batches of up to this many bytes. A reception with several
# records larger than this goes in a transaction instead; one record of any size (up to the
# topic's limit) is a batch of its own.
ATOMIC_BATCH_BYTES = 1024 * 1024
# What a record adds to its key and value in a batch (length varints, attributes, deltas).
RECORD_OVERHEAD_BYTES = 24
# One round of writes carries at most this many bytes; more receptions wait for the next round.
MAX_ROUND_BYTES = 64 * 1024 * 1024
# The write loop waits this long after the first reception arrives before packing, so
# receptions arriving together share one batch (the broker's CPU goes per request). Every
# SMTP session waits it out before its 250. Measured against 1 ms (alternating with Postfix):
# at 10 sessions 1 ms raised the ratio by about 0.15 but not in every run; at 32 sessions it
# lowered it (1.30 against 1.36) and cost ingest a tenth and the broker a fifth more CPU per
# message. A busy MTA has many sessions, so CPU per message decides.
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
    # Its bytes in a record batch: read by each round and each packing, so computed once.
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = sum(
            len(message_id) + len(value) + RECORD_OVERHEAD_BYTES
            for message_id, value in self.records
        )

    @property
    def record_count(self) -> int:
        return len(self.records)


class AtomicAcceptor:
    """Writes the MessageAccepted events of each reception atomically; see the module doc."""

    def __init__(
        self,
        bootstrap: str,
        *,
        topic: str,
        transactional_id: str,
        client_id: str,
        ack_timeout: float,
        batch_bytes: int = ATOMIC_BATCH_BYTES,
        batch_linger: float = BATCH_LINGER_SECONDS,
    ) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._transactional_id = transactional_id
        self._client_id = client_id
        self._ack_timeout = ack_timeout
        self._batch_bytes = batch_bytes
        self._batch_linger = batch_linger
        self._producer: Any = None  # idempotent, for batches
        self._transactional: Any = None  # started when a reception first needs it
        self._transactional_starting = asyncio.Lock()  # a write and a fencing may both start it
        self._partitions = 1  # of the topic, read when the producer starts
        self._next_partition = 0
        self._pending: list[_Reception] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._worker: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    @property
    def topic(self) -> str:
        return self._topic

    async def start(self) -> None:
        """Connect the batch producer; raises if Kafka does not answer."""
        await asyncio.wait_for(self._ready_producer(), max(self._ack_timeout, _STARTUP_SECONDS))
        self._worker = asyncio.create_task(self._run(), name="accepted-writes")

    async def stop(self) -> None:
        """Write what is queued, then close."""
        self._closing = True
        self._wake.set()
        if self._worker is not None:
            await self._worker
        producers = (self._producer, self._transactional)
        self._producer = self._transactional = None
        for producer in producers:
            if producer is not None:
                await producer.stop()
        if self._background:
            await asyncio.wait(self._background, timeout=_DISCARD_SECONDS)

    async def accept(self, events: Sequence[MessageAccepted]) -> None:
        """Return once every event is on `accepted`; AcceptanceFailed otherwise.

        Raises ValueError (codec EncodeError) for an event that does not fit the schema.
        """
        if self._closing or self._worker is None:
            raise AcceptanceFailed("ingest is shutting down")
        records = [(event["id"], encode("MessageAccepted", event)) for event in events]
        reception = _Reception(records=records, enqueued_at=time.monotonic())
        self._pending.append(reception)
        self._wake.set()
        # Shielded: a client that hangs up must not cancel a write shared with others.
        await asyncio.shield(reception.done)

    # -- the write loop -------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if not self._closing:
                await asyncio.sleep(self._batch_linger)
            self._wake.clear()
            while self._pending:
                packing = pack_receptions(self._take_round(), self._batch_bytes)
                await asyncio.gather(
                    *(self._write("batch", self._send_batch, batch) for batch in packing.batches),
                    *(
                        self._write("transaction", self._transaction, [reception])
                        for reception in packing.transactional
                    ),
                )
            if self._closing:
                return

    def _take_round(self) -> list[_Reception]:
        taken: list[_Reception] = []
        size = 0
        while self._pending:
            reception = self._pending[0]
            if taken and size + reception.size > MAX_ROUND_BYTES:
                break
            taken.append(self._pending.pop(0))
            size += reception.size
        return taken

    async def _write(self, kind: str, write: Any, receptions: list[_Reception]) -> None:
        deadline = min(reception.enqueued_at for reception in receptions) + self._ack_timeout
        try:
            await self._before(write(receptions), deadline)
        except Exception as error:
            reason = _describe(error)
            log.warning(
                "accepted messages not written",
                extra={"receptions": len(receptions), "kind": kind, "error": reason},
            )
            metrics.KAFKA_WRITES.labels(kind, "failed").inc()
            self._settle(receptions, "failed", AcceptanceFailed(reason))
            if kind == "transaction":
                self._replace_transactional()
            else:
                self._discard_producer()
            return
        metrics.KAFKA_WRITES.labels(kind, "committed").inc()
        self._settle(receptions, "committed", None)

    async def _before(self, write: Any, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            write.close()
            raise TimeoutError("waited too long for an earlier write")
        # The write runs in its own task so a timeout never waits on aiokafka's own cleanup
        # (an abort against an unreachable broker would hang).
        task = asyncio.create_task(write)
        done, _ = await asyncio.wait({task}, timeout=remaining)
        if not done:
            task.cancel()
            self._keep(task)
            raise TimeoutError(f"no acknowledgement within {self._ack_timeout:g} s")
        task.result()

    def _take_partition(self) -> int:
        # Each write to the next partition; routing reads every partition alike.
        self._next_partition = (self._next_partition + 1) % self._partitions
        return self._next_partition

    async def _send_batch(self, receptions: list[_Reception]) -> None:
        producer = await self._ready_producer()
        builder = producer.create_batch()
        for reception in receptions:
            for message_id, value in reception.records:
                # The producer's batch limit is above what pack_receptions puts in a batch, and
                # a batch takes any first record: a refusal here is a bug, not a big reception.
                if builder.append(key=message_id.encode(), value=value, timestamp=None) is None:
                    raise RuntimeError("a packed reception did not fit its record batch")
        partition = self._take_partition()
        await (await producer.send_batch(builder, self._topic, partition=partition))

    async def _transaction(self, receptions: list[_Reception]) -> None:
        producer = await self._ready_transactional()
        partition = self._take_partition()
        records = [
            Outgoing(self._topic, partition, message_id.encode(), value)
            for reception in receptions
            for message_id, value in reception.records
        ]
        async with producer.transaction():
            acknowledgements = await send_in_batches(producer, records)
            # Every batch must be acknowledged before the commit: aiokafka commits a
            # transaction even when one of its records was refused (say, too large), which
            # would make the others visible. Raising here aborts the transaction instead.
            await asyncio.gather(*acknowledgements)

    def _settle(self, receptions: list[_Reception], result: str, error: Exception | None) -> None:
        now = time.monotonic()
        for reception in receptions:
            metrics.KAFKA_ACK_SECONDS.labels(result).observe(now - reception.enqueued_at)
            if reception.done.done():
                continue
            if error is None:
                reception.done.set_result(None)
            else:
                reception.done.set_exception(error)

    # -- the producers --------------------------------------------------------------------

    async def _ready_producer(self) -> Any:
        if self._producer is None:
            producer = self._new_producer(
                transactional_id=None,
                # Above ATOMIC_BATCH_BYTES so that a packed batch always fits (see _send_batch).
                max_batch_size=CONTENT_MAX_MESSAGE_BYTES,
            )
            await self._start(producer)
            self._producer = producer
        return self._producer

    async def _ready_transactional(self) -> Any:
        async with self._transactional_starting:
            if self._transactional is None:
                self._transactional = await self._started_transactional()
        return self._transactional

    async def _started_transactional(self) -> Any:
        producer = self._new_producer(
            transactional_id=self._transactional_id,
            # A transaction's records go out as batches of this size (aiokafka's default,
            # 16 KiB, held one 10 KB message per batch).
            max_batch_size=MAX_BATCH_SIZE,
            # A transaction left open by a vanished producer blocks read_committed readers
            # until the broker aborts it; a fenced one is aborted at once.
            transaction_timeout_ms=int(max(2 * self._ack_timeout, 10.0) * 1000),
        )
        # Not bounded by ack_timeout: the broker's first transactional producer waits for it to
        # create its transaction-state topic.
        await asyncio.wait_for(self._start(producer), _STARTUP_SECONDS)
        return producer

    def _new_producer(self, **options: Any) -> Any:
        return AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            enable_idempotence=True,
            acks="all",
            compression_type=compression_type(),
            max_request_size=CONTENT_MAX_MESSAGE_BYTES,
            linger_ms=0,
            request_timeout_ms=int(max(self._ack_timeout, 1.0) * 1000),
            **options,
        )

    async def _start(self, producer: Any) -> None:
        try:
            await producer.start()
            self._partitions = len(await producer.partitions_for(self._topic))
        except BaseException:
            self._stop_in_background(producer)
            raise

    def _discard_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            self._stop_in_background(producer)

    def _replace_transactional(self) -> None:
        """Discards the transactional producer and starts its successor now, whose fencing
        makes the broker abort the failed transaction instead of holding read_committed readers
        until it times out."""
        producer, self._transactional = self._transactional, None
        if producer is not None:
            self._stop_in_background(producer)

        async def fence() -> None:
            with contextlib.suppress(Exception, asyncio.TimeoutError):
                await self._ready_transactional()

        if not self._closing:
            self._keep(asyncio.create_task(fence()))

    def _stop_in_background(self, producer: Any) -> None:
        async def stop() -> None:
            with contextlib.suppress(Exception, asyncio.TimeoutError):
                await asyncio.wait_for(abandon(producer), _DISCARD_SECONDS)

        self._keep(asyncio.create_task(stop()))

    def _keep(self, task: asyncio.Task[Any]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)


async def abandon(producer: Any) -> None:
    """Closes a producer without delivering what it still holds.

    aiokafka 0.14 (pinned) has no close-without-flush: `stop()` delivers what is queued, and the
    idempotent sender retries a batch until the broker takes it, however long Kafka is away. A
    discarded producer's batches belong to receptions already answered 451; they must not land
    when Kafka comes back. So: fail what is queued, stop the sender, close the connections.
    """
    producer._closed = True  # what stop() marks first; nothing may be sent from here on
    producer._message_accumulator.fail_all(AcceptanceFailed("producer discarded"))
    await producer._sender.close()
    await producer.client.close()


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__
