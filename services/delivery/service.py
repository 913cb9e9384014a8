"""The delivery service: DeliveryRequests from `attempts` become SMTP transactions and events.

Each request is handled on its own task (up to `delivery.consumer_concurrency` at once), so a
slow site never holds up another; the consumer commits an offset only once every request
below it has finished, so a crash redelivers but never loses one. A request handed out again
whose outcome was already written is skipped (finished_attempts.py): what a crash resends is
bounded by the SMTP transactions that were open at that moment. For each request the service
produces, and waits for Kafka to acknowledge:
- a DeliveryOutcome on `outcomes`, key = message id, partition = the queue's partition (the
  scheduler that released the request owns that partition and applies the outcome);
- a Delivery, TransientFailure or Bounce LogRecord on `log`, key = message id.

One instance at a time delivers to a site (`SiteOwnership`): a request whose site hashes to
an `attempts` partition this instance does not hold is handed to that partition, so the
egress path's limits, applied per connection pool, hold for the whole deployment. At a
rebalance the pools retire before the partitions go (README, "Egress").

Every process follows the compacted `admin` topic for the operator's ready queue suspensions
(read in full before the first request is taken) and publishes its ready queues' states on
`ready-queues` (ready_queue_publisher.py), which the admin API reports for the deployment.

On SIGTERM intake stops, in-flight deliveries finish, offsets are committed, then the SMTP
connections close.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Iterable
from typing import cast

from aiokafka import TopicPartition

from ..core.dns.resolver import MxResolver
from ..core.domain.log_writer import ANONYMOUS, LogWriter
from ..core.events.codec import DecodeError, decode, encode
from ..core.events.records import DeliveryRequest
from ..core.kafka.admin_commands import apply_or_reject
from ..core.kafka.consumer import ConsumedRecord, EventConsumer
from ..core.kafka.dead_letter import DeadLetters
from ..core.kafka.producer import EventProducer
from ..core.kafka.topic_follower import TopicFollower
from ..core.kafka.topics import TopicCatalog, TopicRole, partition_for_queue
from ..core.policy import service_policy
from ..core.policy.bounce_classifier import log_writer
from ..core.runtime.service import ServiceRuntime, ServiceSpec
from . import metrics
from .attempt import AttemptResult, Deliverer, Planned, log_event, outcome_event
from .finished_attempts import FinishedAttempts
from .pool import SiteGivenUp
from .ready_queue_publisher import ReadyQueuePublisher

log = logging.getLogger(__name__)

SERVICE_NAME = "delivery"


def decode_request(data: bytes) -> DeliveryRequest:
    """A DeliveryRequest from `attempts`; DecodeError (dead-lettered) for anything else."""
    _, record = decode(data, expected="DeliveryRequest")
    return cast(DeliveryRequest, record)


# Marks a request handed to its site's owner: delivered where it lands, never handed on again
# (two processes whose DNS caches disagree on the site must not pass it back and forth).
SITE_OWNER_HEADER = "relaystream-site-owner"


@functools.lru_cache(maxsize=65_536)
def _site_partition(site: str, partitions: int) -> int:
    # murmur2 in Python costs microseconds per message; sites repeat.
    return partition_for_queue(site, partitions)


class SiteOwnership:
    """Which `attempts` partition owns each destination site, and whether this process holds
    it: one process at a time delivers to a site, so the egress path's limits, applied per
    process, hold for the whole deployment (README, "Egress limits across instances")."""

    def __init__(self, partitions: int) -> None:
        self._partitions = partitions
        self._held: frozenset[int] = frozenset()

    def partition_of(self, site: str) -> int:
        return _site_partition(site, self._partitions)

    def owner_elsewhere(self, site: str, record: ConsumedRecord[DeliveryRequest]) -> int | None:
        """The partition to hand the request to, or None to deliver it here: it was handed
        here already, or this process holds its site's partition."""
        if any(name == SITE_OWNER_HEADER for name, _ in record.headers):
            return None
        owner = self.partition_of(site)
        return None if owner in self._held else owner

    def assigned(self, partitions: Iterable[int]) -> None:
        self._held = frozenset(partitions)

    def revoked(self) -> None:
        self._held = frozenset()


class DeliveryHandler:
    """Handles one consumed DeliveryRequest: deliver, then record the outcome and the log."""

    def __init__(
        self,
        deliverer: Deliverer,
        producer: EventProducer,
        topics: TopicCatalog,
        outcome_partitions: int,
        finished: FinishedAttempts,
        log_writer: LogWriter = ANONYMOUS,
        sites: SiteOwnership | None = None,
    ) -> None:
        self._deliverer = deliverer
        self._sites = sites
        self._log_writer = log_writer
        self._producer = producer
        self._topics = topics
        self._outcome_partitions = outcome_partitions
        self._finished = finished

    async def __call__(self, record: ConsumedRecord[DeliveryRequest]) -> None:
        request = record.value
        if request is None:
            return  # `attempts` is not compacted; a tombstone carries nothing to deliver
        partition = partition_for_queue(request["queue"], self._outcome_partitions)
        if await self._finished.contains(
            partition, record.timestamp_ms, request["id"], request["attempt"]
        ):
            metrics.SKIPPED_FINISHED_ATTEMPTS.inc()
            log.info(
                "attempt already finished: not sent again",
                extra={"id": request["id"], "attempt": request["attempt"]},
            )
            return
        started = time.monotonic()
        planned = await self._deliverer.plan(request)
        if isinstance(planned, Planned) and self._sites is not None:
            owner = self._sites.owner_elsewhere(planned.site, record)
            if owner is not None:
                await self._forward(record, planned.site, owner)
                return
        try:
            result = await self._deliverer.send(planned, started)
        except SiteGivenUp:
            # Not recorded and not committed (its partition was revoked): the record is
            # handed out again to the process that owns the site now.
            log.info("site handed over while waiting: left to its next owner")
            return
        await self._record(request, result, partition)
        self._finished.note_finished(request["id"], request["attempt"])

    async def _forward(
        self, record: ConsumedRecord[DeliveryRequest], site: str, partition: int
    ) -> None:
        """Hand the request as it came to the `attempts` partition that owns its site; this
        record is done once Kafka has it (its offset may then be committed)."""
        metrics.FORWARDED_TO_SITE_OWNER.inc()
        await self._producer.send(
            self._topics.attempts.name,
            record.raw_value,
            key=record.key,
            partition=partition,
            headers=[(SITE_OWNER_HEADER, site.encode("utf-8"))],
        )

    async def _record(
        self, request: DeliveryRequest, result: AttemptResult, partition: int
    ) -> None:
        # Both must be acknowledged before the offset may be committed; sent together so they
        # share the producer's batches.
        await asyncio.gather(
            self._producer.send(
                self._topics.outcomes.name,
                encode("DeliveryOutcome", outcome_event(request, result)),
                key=request["id"],
                partition=partition,
            ),
            self._producer.send(
                self._topics.log.name,
                encode("LogRecord", log_event(request, result, self._log_writer)),
                key=request["id"],
            ),
        )


async def main(runtime: ServiceRuntime) -> None:
    settings, topics = runtime.settings, runtime.topics
    bootstrap = settings.runtime.kafka_bootstrap
    client_id = runtime.client_id
    # One resolver for the service's life: its cache is what spares repeated lookups.
    resolver = MxResolver(
        [(server.host, server.port) for server in settings.delivery.nameservers] or None
    )
    policy = service_policy(settings, settings.delivery.policy_path)
    deliverer = Deliverer.from_settings(settings.delivery, resolver, policy)
    writer = log_writer(settings.runtime, policy)
    metrics.CURRENT_POOLS.registry = deliverer.pools
    publisher_task: asyncio.Task[None] | None = None
    publisher_stop = asyncio.Event()
    try:
        async with EventProducer(
            bootstrap, client_id=client_id, linger_ms=settings.runtime.kafka_linger_ms
        ) as producer:
            dead_letters = DeadLetters(
                producer, topic=topics.dead_letter.name, service=SERVICE_NAME, encode=encode
            )
            admin = TopicFollower(
                bootstrap,
                topics.admin.name,
                await producer.partitions_for(topics.admin.name),
                functools.partial(apply_or_reject, deliverer.suspensions),
                client_id=f"{client_id}-admin",
                what="ready queue suspensions",
                dead_letters=dead_letters,
                group=SERVICE_NAME,
            )
            await admin.start()
            publisher = ReadyQueuePublisher(
                producer,
                topics.ready_queues.name,
                deliverer.pools,
                deliverer.suspensions,
                node=settings.runtime.resolved_node_id(),
                refresh_seconds=settings.delivery.ready_queue_refresh_seconds,
            )
            finished = FinishedAttempts(bootstrap, topics.outcomes.name, client_id=client_id)
            sites = (
                SiteOwnership(await producer.partitions_for(topics.attempts.name))
                if settings.delivery.site_ownership
                else None
            )
            handler = DeliveryHandler(
                deliverer,
                producer,
                topics,
                await producer.partitions_for(topics.outcomes.name),
                finished,
                writer,
                sites,
            )

            def assigned(partitions: frozenset[TopicPartition]) -> None:
                finished.new_assignment(tp.partition for tp in partitions)
                if sites is not None:
                    sites.assigned(tp.partition for tp in partitions)

            async def revoked(partitions: frozenset[TopicPartition]) -> None:
                # Another process may own these sites next: it must find no connection of
                # ours open and no burst of ours just spent.
                if sites is not None:
                    sites.revoked()
                    await deliverer.pools.retire_all()

            consumer: EventConsumer[DeliveryRequest] = EventConsumer(
                bootstrap,
                group_id=runtime.group_id(SERVICE_NAME),
                topics=[topics.attempts.name],
                decode=decode_request,
                reject_on=(DecodeError,),
                dead_letters=dead_letters,
                client_id=client_id,
                group_instance_id=settings.runtime.kafka_group_instance_id,
                on_assigned=assigned,
                on_revoked=revoked,
            )
            try:
                # A suspension present at start holds from the first request on.
                await admin.caught_up.wait()
                publisher_task = asyncio.create_task(publisher.run(publisher_stop))
                async with consumer:
                    runtime.health.set_ready(True)
                    await consumer.run(
                        handler,
                        concurrency=settings.delivery.consumer_concurrency,
                        stop=runtime.shutdown_requested,
                    )
            finally:
                publisher_stop.set()
                if publisher_task is not None:
                    await publisher_task
                    await publisher.withdraw_all()
                await admin.stop()
    finally:
        await deliverer.aclose()
        metrics.CURRENT_POOLS.registry = None


SERVICE = ServiceSpec(
    name=SERVICE_NAME,
    main=main,
    groups={SERVICE_NAME: (TopicRole.ATTEMPTS,)},
    # finished_attempts.py reads back the outcomes already written; the admin topic holds the
    # ready queue suspensions.
    reads=(TopicRole.OUTCOMES, TopicRole.ADMIN),
    produces=(TopicRole.OUTCOMES, TopicRole.LOG, TopicRole.READY_QUEUES, TopicRole.DEAD_LETTER),
)
