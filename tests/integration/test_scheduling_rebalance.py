"""Two scheduling instances: a joining one takes partitions without the other re-reading its own.

Instance A (in process, so its per-partition build counter is its own) owns every partition
and serves messages; instance B (a real `relaystream run scheduling` process) joins. A must
build nothing again (it is newly given no partition), drop only what B took, and keep
releasing from the partitions it kept; across the join no message is lost or released twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from scheduling_support import (
    PARTITIONS,
    TopicWatcher,
    create_topics,
    now_ms,
    queue_message,
    settings_for,
)
from service_process import ServiceProcess

from relaystream.core.kafka.producer import EventProducer
from relaystream.core.kafka.topics import partition_for_queue
from relaystream.scheduling import metrics
from relaystream.scheduling.config_resolver import default_queue_config
from relaystream.scheduling.scheduler import Scheduler


def builds(partition: int) -> float:
    return float(metrics.PARTITION_BUILDS.labels(str(partition))._value.get())


def queue_of_each_partition() -> dict[int, str]:
    """One queue name per `queued` partition."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < PARTITIONS:
        queue = f"q{n}.example"
        found.setdefault(partition_for_queue(queue, PARTITIONS), queue)
        n += 1
    return found


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[EventProducer]:
    async with EventProducer(kafka_bootstrap, client_id="rebalance-test") as producer:
        yield producer


async def test_a_joining_instance_takes_partitions_the_others_keep_serving_theirs(
    kafka_bootstrap: str, topic_prefix: str, producer: EventProducer, log_path: Path
) -> None:
    topics = await create_topics(kafka_bootstrap, topic_prefix)
    queues = queue_of_each_partition()
    attempts = TopicWatcher(kafka_bootstrap, topics.attempts, "DeliveryRequest")
    await attempts.start()
    a = Scheduler(settings_for(kafka_bootstrap, topic_prefix), policy_config=default_queue_config)
    stop = asyncio.Event()
    task = asyncio.create_task(a.run(stop))
    b = ServiceProcess(
        "scheduling",
        bootstrap=kafka_bootstrap,
        prefix=topic_prefix,
        log_path=log_path,
        settings={"RELAYSTREAM_SCHEDULING_TICK_INTERVAL_SECONDS": "0.2"},
    )
    expected: set[str] = set()
    try:
        for _ in range(300):
            if a.ready or task.done():
                break
            await asyncio.sleep(0.1)
        assert a.ready, task.exception() if task.done() else "A not ready after 30 s"
        assert a.partitions.numbers() == set(range(PARTITIONS))
        built_before = {p: builds(p) for p in range(PARTITIONS)}
        assert all(count >= 1 for count in built_before.values()), built_before

        # Served by A before the join.
        start = now_ms()
        for partition, queue in queues.items():
            message_id = f"before-{partition}"
            await queue_message(producer, topics, message_id, queue=queue, due_at=start)
            expected.add(message_id)
        await attempts.wait_for(len(expected), within=20)

        # Due while B joins (its start and the group's rebalance take seconds), and later.
        start = now_ms()
        for partition, queue in queues.items():
            for label, delay in (("during", 3_000), ("after", 40_000)):
                message_id = f"{label}-{partition}"
                await queue_message(producer, topics, message_id, queue=queue, due_at=start + delay)
                expected.add(message_id)
        b.start()
        await b.wait_ready(within=90)
        for _ in range(300):
            if a.ready and a.partitions.numbers() != set(range(PARTITIONS)):
                break
            await asyncio.sleep(0.1)
        kept = a.partitions.numbers()
        assert a.ready and kept and kept != set(range(PARTITIONS)), kept
        # A was newly given nothing, so it built nothing: the kept partitions kept serving
        # from their state, without re-reading their spool.
        assert {p: builds(p) for p in range(PARTITIONS)} == built_before

        seen = await attempts.wait_for(len(expected), within=70)
        await asyncio.sleep(2.0)
        assert {r.key for r in seen} == expected, "a message was not released"
        for partition in kept:
            # Released by A from its kept state (B does not own the partition).
            assert a.partitions.get(partition) is not None
            assert a.partitions.in_flight(f"during-{partition}") is not None
            assert a.partitions.in_flight(f"after-{partition}") is not None
    finally:
        b.terminate(within=30)
        b.close()
        stop.set()
        await asyncio.wait_for(task, 30)
        await attempts.stop()

    keys = [r.key for r in attempts.records]
    assert sorted(keys) == sorted(expected), "a message was lost or released twice"
