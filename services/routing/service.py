"""The routing service: its declaration (`SERVICE`) and main; the runtime runs it.

See the package docstring for what the service does and its exactly-once guarantee, and
batch_loop.py for the transaction of one batch.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from ..core.kafka.consumer import HEARTBEAT_INTERVAL_MS, SESSION_TIMEOUT_MS
from ..core.kafka.producer import MAX_BATCH_SIZE, MAX_REQUEST_SIZE, best_compression
from ..core.kafka.topics import TopicCatalog, TopicRole
from ..core.policy import Policy, PolicyLimits, policy_from_file, policy_from_source
from ..core.runtime.service import ServiceRuntime, ServiceSpec
from ..core.runtime.settings import Settings
from .batch_loop import BatchLoop
from .router import OutputPartitions, Router

log = logging.getLogger(__name__)

SERVICE_NAME = "routing"
# Without a policy file every message keeps its meta: queue = the recipient's domain.
DEFAULT_POLICY_NAME = "default.lua"
DEFAULT_POLICY_SOURCE = "-- relaystream default: no reception handler, meta unchanged\n"
# The broker aborts a transaction left open this long (an instance that vanished and did not
# come back under its transactional id); read_committed readers wait for it until then. It must
# end before the group can give a silent instance's partitions away: see core/kafka/fencing.py
# (transaction timeout + broker abort check + heartbeat interval < session timeout).
TRANSACTION_TIMEOUT_MS = 15_000


def load_policy(settings: Settings) -> Policy:
    path = settings.routing.policy_path
    if path is None:
        return policy_from_source(DEFAULT_POLICY_SOURCE, DEFAULT_POLICY_NAME)
    return policy_from_file(
        path, PolicyLimits(deadline_seconds=settings.routing.policy_deadline_seconds)
    )


def transactional_id(settings: Settings, topics: TopicCatalog) -> str:
    """Stable per instance, so a restarted instance fences its predecessor and the broker
    aborts the transaction it left open (rather than readers waiting for it to time out)."""
    if settings.routing.transactional_id:
        return settings.routing.transactional_id
    instance = settings.runtime.kafka_group_instance_id or socket.gethostname()
    return topics.transactional_id(SERVICE_NAME, instance)


def accepted_consumer(settings: Settings, topics: TopicCatalog, client_id: str) -> Any:
    return AIOKafkaConsumer(
        bootstrap_servers=settings.runtime.kafka_bootstrap,
        client_id=client_id,
        group_id=topics.group_id(SERVICE_NAME),
        group_instance_id=settings.runtime.kafka_group_instance_id,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
        # ingest commits each reception's records in one transaction: never route an aborted one.
        isolation_level="read_committed",
        # Offsets are committed only inside our transactions.
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )


def transactional_producer(settings: Settings, topics: TopicCatalog, client_id: str) -> Any:
    return AIOKafkaProducer(
        bootstrap_servers=settings.runtime.kafka_bootstrap,
        client_id=client_id,
        transactional_id=transactional_id(settings, topics),
        enable_idempotence=True,
        acks="all",
        compression_type=best_compression(),
        # The batches are whole when handed over (send_in_batches) and their acknowledgements
        # are awaited before the commit: a linger would only delay every transaction.
        linger_ms=0,
        max_batch_size=MAX_BATCH_SIZE,
        max_request_size=MAX_REQUEST_SIZE,
        transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
    )


async def output_partitions(producer: Any, topics: TopicCatalog) -> OutputPartitions:
    async def count(topic: str) -> int:
        return len(await producer.partitions_for(topic))

    return OutputPartitions(
        queued=await count(topics.queued.name),
        decisions=await count(topics.decisions.name),
        log=await count(topics.log.name),
        dead_letter=await count(topics.dead_letter.name),
    )


async def main(runtime: ServiceRuntime) -> None:
    settings, topics = runtime.settings, runtime.topics
    policy = load_policy(settings)
    log.info("policy loaded", extra={"policy": policy.name, "policy_hash": policy.content_hash})
    producer = transactional_producer(settings, topics, runtime.client_id)
    # First: initialising the transactional id fences a predecessor and aborts its open
    # transaction, so the offsets the consumer starts from are settled.
    await producer.start()
    try:
        router = Router(
            policy=policy,
            topics=topics,
            partitions=await output_partitions(producer, topics),
            service=SERVICE_NAME,
        )
        consumer = accepted_consumer(settings, topics, runtime.client_id)
        loop = BatchLoop(
            consumer=consumer,
            producer=producer,
            router=router,
            group=runtime.group_id(SERVICE_NAME),
            max_records=settings.routing.max_batch_records,
        )
        consumer.subscribe([topics.accepted.name], listener=loop.listener)
        await consumer.start()
        try:
            runtime.health.add_readiness_check("accepted-consumer", loop.ready)
            runtime.health.set_ready(True)
            await loop.run(runtime.shutdown_requested)
        finally:
            runtime.health.set_ready(False, "stopping")
            await consumer.stop()
    finally:
        await producer.stop()


SERVICE = ServiceSpec(
    name=SERVICE_NAME,
    main=main,
    groups={SERVICE_NAME: (TopicRole.ACCEPTED,)},
    produces=(TopicRole.QUEUED, TopicRole.DECISIONS, TopicRole.LOG, TopicRole.DEAD_LETTER),
)
