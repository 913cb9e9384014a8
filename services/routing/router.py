"""The routing pipeline behind the faust agent: decide in order, produce concurrently, ack.

The agent hands each `accepted` event to `Router.take`, one at a time (concurrency 1: the
policy is a single Lua state). `take` decodes and decides synchronously, starts the produce
calls and returns; a task per event then waits until Kafka acknowledged every output, records
the id in the decided-ids table and only then acks the event. Faust commits an offset only
when every event below it is acked, and flushes its own producer (the table's changelog)
before committing, so:

- a crash (even SIGKILL) before an event's outputs are acknowledged leaves its offset
  uncommitted: the event is routed again after the restart, nothing is lost;
- once the offset is committed, the decided-ids table has the id too.

Acks are manual (`Stream.noack()`): faust's automatic ack happens in a `finally`, so an event
whose processing raised or was cancelled would count as done and its offset be committed.

The table write and the ack run in the per-event task, which asyncio created with a copy of
the agent's context: faust's `current_event()` (a context variable) is still the event the
task belongs to, so the table picks the event's partition and timestamp as it would inline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from ..core.events.codec import DecodeError, decode, encode
from ..core.events.records import MessageAccepted
from ..core.kafka.dead_letter import DeadLetters, PoisonRecord, RecordRejected
from ..core.kafka.producer import EventProducer
from ..core.kafka.topics import TopicCatalog, partition_for_queue
from ..core.policy import Policy
from . import metrics
from .decision import InvalidAccepted, RoutingResult, decide

log = logging.getLogger(__name__)

# A failed produce (broker unreachable, ...) is retried with this backoff until it succeeds
# or the service stops; the event stays unacked meanwhile, so nothing is skipped.
RETRY_FIRST_SECONDS = 0.2
RETRY_MAX_SECONDS = 5.0


class KafkaEvent(Protocol):
    """What the router reads from a faust event (faust.types.EventT, narrowed)."""

    @property
    def key(self) -> Any: ...

    @property
    def value(self) -> Any: ...

    @property
    def message(self) -> Any: ...


class DecidedIds(Protocol):
    """The decided-ids table: faust's windowed table wrapper, keyed by message id."""

    def __getitem__(self, key: str) -> Any: ...

    def __setitem__(self, key: str, value: int) -> None: ...


Ack = Callable[[KafkaEvent], Awaitable[Any]]


@dataclass(frozen=True)
class Outputs:
    """What one event produces once decided."""

    message_id: str
    result: RoutingResult | None = None
    rejection: RecordRejected | None = None


class Router:
    def __init__(
        self,
        *,
        policy: Policy,
        producer: EventProducer,
        dead_letters: DeadLetters,
        topics: TopicCatalog,
        queued_partitions: int,
        group: str,
        max_in_flight: int,
        window_seconds: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._policy = policy
        self._producer = producer
        self._dead_letters = dead_letters
        self._topics = topics
        self._queued_partitions = queued_partitions
        self._group = group
        self._clock = clock
        self._window_seconds = window_seconds
        self._slots = asyncio.Semaphore(max_in_flight)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._in_flight_ids: set[str] = set()
        self._stopping = asyncio.Event()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def take(self, event: KafkaEvent, decided: DecidedIds, ack: Ack) -> None:
        """Decide one event and start producing its outputs (the agent's loop body)."""
        await self._slots.acquire()
        if self._stopping.is_set():
            self._slots.release()
            await asyncio.Future()  # stopping: take nothing more; the agent is cancelled
        outputs = self._decide(event, decided)
        if outputs is None:
            self._slots.release()
            await ack(event)
            return
        self._in_flight_ids.add(outputs.message_id)
        task = asyncio.create_task(self._finish(event, outputs, decided, ack))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def drain(self, within: float) -> bool:
        """Stop taking events and wait for the in-flight ones; False if some did not finish
        (they stay unacked and are routed again by whoever owns their partition next)."""
        self._stopping.set()
        if not self._in_flight:
            return True
        _, pending = await asyncio.wait(set(self._in_flight), timeout=within)
        for task in pending:
            task.cancel()
        return not pending

    def _decide(self, event: KafkaEvent, decided: DecidedIds) -> Outputs | None:
        """The outputs of `event`, or None when it needs none (a duplicate, a tombstone)."""
        value = event.value
        if value is None:
            return None  # `accepted` is not compacted; a tombstone carries nothing to route
        try:
            _, record = decode(value, expected="MessageAccepted")
        except DecodeError as err:
            return Outputs(_key_text(event.key), rejection=RecordRejected(err.reason, "decode"))
        accepted = cast(MessageAccepted, record)
        message_id = accepted["id"]
        if message_id in self._in_flight_ids or self._was_decided(decided, message_id):
            metrics.DUPLICATES.inc()
            return None
        try:
            result = decide(accepted, self._policy, decided_at=self._clock())
        except InvalidAccepted as err:
            return Outputs(message_id, rejection=RecordRejected(str(err), "validation"))
        except Exception as err:  # a bug must not wedge the partition: keep the record
            log.exception("routing failed", extra={"message_id": message_id})
            return Outputs(message_id, rejection=RecordRejected(repr(err), "routing"))
        return Outputs(message_id, result=result)

    def _was_decided(self, decided: DecidedIds, message_id: str) -> bool:
        # The window of this record's timestamp: where a redelivery finds its first run.
        # The previous window too: a copy produced again later (ingest retrying) is a new
        # record with a later timestamp, recognized if within one window of the original.
        windows = decided[message_id]
        return bool(windows.current() or windows.delta(self._window_seconds))

    async def _finish(
        self, event: KafkaEvent, outputs: Outputs, decided: DecidedIds, ack: Ack
    ) -> None:
        try:
            await self._produce_until_acknowledged(event, outputs)
            result = outputs.result
            if result is not None:
                metrics.DECISIONS.labels(result.outcome).inc()
                if result.remember:
                    decided[outputs.message_id] = int(time.time() * 1000)
            await ack(event)
        finally:
            self._in_flight_ids.discard(outputs.message_id)
            self._slots.release()

    async def _produce_until_acknowledged(self, event: KafkaEvent, outputs: Outputs) -> None:
        delay = RETRY_FIRST_SECONDS
        while True:
            try:
                await asyncio.gather(*self._sends(event, outputs))
                return
            except Exception:
                if self._stopping.is_set():
                    raise
                metrics.PRODUCE_RETRIES.inc()
                log.exception("producing routing outputs failed: retrying", extra={"delay": delay})
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)

    def _sends(self, event: KafkaEvent, outputs: Outputs) -> list[Awaitable[Any]]:
        result = outputs.result
        if result is None:
            assert outputs.rejection is not None
            return [self._dead_letter(event, outputs.rejection)]
        topics = self._topics
        message_id = outputs.message_id
        sends: list[Awaitable[Any]] = [
            self._producer.send(
                topics.decisions.name, encode("RoutingDecision", result.decision), key=message_id
            ),
            self._producer.send(topics.log.name, encode("LogRecord", result.log), key=message_id),
        ]
        if result.queued is not None:
            sends.append(
                self._producer.send(
                    topics.queued.name,
                    encode("QueuedMessage", result.queued),
                    key=message_id,
                    partition=partition_for_queue(result.queued["queue"], self._queued_partitions),
                )
            )
        if result.policy_failure is not None:
            failure = result.policy_failure
            log.warning(
                "policy failed: message rejected and dead-lettered for replay",
                extra={
                    "message_id": message_id,
                    "reason": failure.reason,
                    "error": failure.message,
                },
            )
            rejection = RecordRejected(f"policy {failure.reason}: {failure.message}", "policy")
            sends.append(self._dead_letter(event, rejection))
        return sends

    def _dead_letter(self, event: KafkaEvent, rejection: RecordRejected) -> Awaitable[None]:
        message = event.message
        poison = PoisonRecord(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=_key_bytes(event.key),
            value=event.value,
        )
        return self._dead_letters.send(poison, rejection, group=self._group)


def _key_bytes(key: object) -> bytes | None:
    if key is None or isinstance(key, bytes):
        return key
    return str(key).encode("utf-8")


def _key_text(key: object) -> str:
    if isinstance(key, bytes):
        return key.decode("utf-8", errors="replace")
    return "" if key is None else str(key)
