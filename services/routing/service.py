"""The routing service: its declaration (`SERVICE`) and main; the runtime runs it.

See the package docstring for what the service does and its exactly-once guarantee, and
core/kafka/transactional_loop.py for the transaction of one batch. A failed transaction ends
the process (TransactionFailed); the restarted one routes the batch again.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from typing import Any

from ..core.kafka import transactional_loop
from ..core.kafka.fencing import LOOP_TRANSACTION_TIMEOUT_MS
from ..core.kafka.topics import TopicCatalog, TopicRole
from ..core.kafka.transactional_loop import BATCH_LINGER_SECONDS, TransactionalLoop
from ..core.policy import Policy, configured_policy
from ..core.policy.bounce_classifier import log_writer
from ..core.runtime.service import ServiceRuntime, ServiceSpec
from ..core.runtime.settings import Settings
from . import metrics
from .router import OutputPartitions, Routed, Router

log = logging.getLogger(__name__)

SERVICE_NAME = "routing"


def load_policy(settings: Settings) -> Policy:
    """The policy, for records whose reception handler did not run at ingest."""
    return configured_policy(settings.routing.policy_path, settings.routing.policy_deadline_seconds)


def transactional_id(settings: Settings, topics: TopicCatalog) -> str:
    """Stable per instance, so a restarted instance fences its predecessor and the broker
    aborts the transaction it left open (rather than readers waiting for it to time out)."""
    if settings.routing.transactional_id:
        return settings.routing.transactional_id
    instance = settings.runtime.kafka_group_instance_id or socket.gethostname()
    return topics.transactional_id(SERVICE_NAME, instance)


def accepted_consumer(settings: Settings, topics: TopicCatalog, client_id: str) -> Any:
    # read_committed (ingest writes receptions in transactions): never route an aborted one.
    return transactional_loop.transactional_consumer(
        bootstrap=settings.runtime.kafka_bootstrap,
        group_id=topics.group_id(SERVICE_NAME),
        group_instance_id=settings.runtime.kafka_group_instance_id,
        client_id=client_id,
    )


def transactional_producer(settings: Settings, topics: TopicCatalog, client_id: str) -> Any:
    return transactional_loop.transactional_producer(
        bootstrap=settings.runtime.kafka_bootstrap,
        transactional_id=transactional_id(settings, topics),
        client_id=client_id,
        transaction_timeout_ms=LOOP_TRANSACTION_TIMEOUT_MS,
    )


def count_decisions(records: Sequence[Any], routed: Sequence[Routed]) -> None:
    """After a commit: the decisions it made, by outcome."""
    for result in routed:
        if result.outcome is not None:
            metrics.DECISIONS.labels(result.outcome).inc()


def routing_loop(
    *,
    consumer: Any,
    producer: Any,
    router: Router,
    group: str,
    max_records: int,
    linger: float = BATCH_LINGER_SECONDS,
) -> TransactionalLoop[Routed]:
    """The exactly-once loop routing runs: each batch routed in one transaction."""
    return TransactionalLoop(
        consumer=consumer,
        producer=producer,
        transform=router.route,
        group=group,
        max_records=max_records,
        committed=count_decisions,
        linger=linger,
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
            log_writer=log_writer(settings.runtime, policy),
        )
        consumer = accepted_consumer(settings, topics, runtime.client_id)
        loop = routing_loop(
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
