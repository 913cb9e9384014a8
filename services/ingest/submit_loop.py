"""Ingest's `submit` consumer: the core's transactional loop, restarted in place when it fails.

Each batch of `submit` records becomes their MessageAccepted records (or dead letters) in one
Kafka transaction together with the consumed offsets (core/kafka/transactional_loop.py), so a
crash at any moment re-converts only what was not committed, and nothing twice.

A failed transaction must not take SMTP and HTTP down with it, so unlike routing (which exits
and is restarted) the loop alone restarts, after a back-off: a new producer under the same
transactional id (its init_transactions fences the failed one and settles its open
transaction), then the consumer goes back to the committed offsets and goes on. The producer
has a transactional id of its own (`submit_transactional_id`): it must not fence, or be fenced
by, the acceptor's producer of the same instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..core.kafka.fencing import LOOP_TRANSACTION_TIMEOUT_MS
from ..core.kafka.topics import TopicCatalog
from ..core.kafka.transactional_loop import (
    TransactionalLoop,
    transactional_consumer,
    transactional_producer,
)
from .acceptor import abandon
from .submissions import AcceptedPartitions, Converted, SubmissionConverter, count_committed

log = logging.getLogger(__name__)

# Back-off between restarts of the loop: doubling from the first to the most, back to the
# first once the loop ran this long without failing.
RESTART_FIRST_SECONDS = 1.0
RESTART_MAX_SECONDS = 30.0
RESTART_RESET_SECONDS = 60.0
# A producer start waits for the broker's transaction coordinator (60 s at most, as the
# acceptor's); a discarded producer gets this long to close.
_STARTUP_SECONDS = 60.0
_DISCARD_SECONDS = 5.0


class SubmitLoop:
    """Runs the submit consumer until `stop` is set; see the module doc."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topics: TopicCatalog,
        group: str,
        group_instance_id: str | None,
        transactional_id: str,
        client_id: str,
        max_records: int,
        converter_for: Callable[[AcceptedPartitions], SubmissionConverter],
        stop: asyncio.Event,
        offload: Callable[[Callable[[], list[Converted]]], Awaitable[list[Converted]]]
        | None = None,
    ) -> None:
        self._bootstrap = bootstrap
        self._topics = topics
        self._group = group
        self._group_instance_id = group_instance_id
        self._transactional_id = transactional_id
        self._client_id = client_id
        self._max_records = max_records
        self._converter_for = converter_for
        self._stop = stop
        # Where a batch is converted (the conversion runs the policy): off the event loop.
        self._offload = offload
        self._loop: TransactionalLoop[Converted] | None = None
        self.restarts = 0

    def ready(self) -> bool:
        """Assigned and polling (the readiness detail `submit-consumer`)."""
        return self._loop is not None and self._loop.ready()

    async def run(self) -> None:
        producer = await self._started_producer_after(0.0)
        if producer is None:
            return  # stopping
        consumer = transactional_consumer(
            bootstrap=self._bootstrap,
            group_id=self._group,
            group_instance_id=self._group_instance_id,
            client_id=self._client_id,
        )
        try:
            partitions = AcceptedPartitions(
                accepted=len(await producer.partitions_for(self._topics.accepted.name)),
                dead_letter=len(await producer.partitions_for(self._topics.dead_letter.name)),
            )
            loop = TransactionalLoop(
                consumer=consumer,
                producer=producer,
                transform=self._converter_for(partitions),
                group=self._group,
                max_records=self._max_records,
                committed=count_committed,
                offload=self._offload,
            )
            consumer.subscribe([self._topics.submit.name], listener=loop.listener)
            await consumer.start()
            self._loop = loop
            producer = await self._serve(loop, producer)
        finally:
            self._loop = None
            with contextlib.suppress(Exception, asyncio.TimeoutError):
                await asyncio.wait_for(consumer.stop(), _STARTUP_SECONDS)
            if producer is not None:  # its last transaction ended: nothing left to send
                with contextlib.suppress(Exception, asyncio.TimeoutError):
                    await asyncio.wait_for(producer.stop(), _DISCARD_SECONDS)

    async def _serve(self, loop: TransactionalLoop[Converted], producer: Any) -> Any:
        """Run `loop`, restarting it after each failure; the producer in use at the end."""
        delay = RESTART_FIRST_SECONDS
        while True:
            started = time.monotonic()
            try:
                await loop.run(self._stop)
                return producer
            except Exception as error:  # TransactionFailed, or the consumer's own failure
                if time.monotonic() - started > RESTART_RESET_SECONDS:
                    delay = RESTART_FIRST_SECONDS
                self.restarts += 1
                log.warning(
                    "submit loop failed: restarting it with a new producer",
                    extra={"error": repr(error), "delay": delay, "restarts": self.restarts},
                )
            await _discard(producer)
            producer = await self._started_producer_after(delay, loop)
            if producer is None:
                return None
            delay = min(delay * 2, RESTART_MAX_SECONDS)

    async def _started_producer_after(
        self, delay: float, loop: TransactionalLoop[Converted] | None = None
    ) -> Any:
        """A started producer, `loop` restarted with it; retried with back-off until it
        works. None when `stop` is set meanwhile."""
        while True:
            if delay and await _stopped_within(self._stop, delay):
                return None
            if self._stop.is_set():
                return None
            producer = transactional_producer(
                bootstrap=self._bootstrap,
                transactional_id=self._transactional_id,
                client_id=self._client_id,
                transaction_timeout_ms=LOOP_TRANSACTION_TIMEOUT_MS,
            )
            try:
                await asyncio.wait_for(producer.start(), _STARTUP_SECONDS)
                if loop is not None:
                    await loop.restart(producer)
                    log.info("submit loop restarted", extra={"restarts": self.restarts})
                return producer
            except Exception as error:
                log.warning(
                    "submit loop: starting a producer failed, retrying",
                    extra={"error": repr(error), "delay": max(delay, RESTART_FIRST_SECONDS)},
                )
                await _discard(producer)
            delay = min(max(delay * 2, RESTART_FIRST_SECONDS), RESTART_MAX_SECONDS)


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


async def _discard(producer: Any) -> None:
    """Close a producer without waiting on a broker that may be gone; after a failed
    transaction nothing it holds may be sent."""
    with contextlib.suppress(Exception, asyncio.TimeoutError):
        await asyncio.wait_for(abandon(producer), _DISCARD_SECONDS)
