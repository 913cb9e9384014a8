"""Two routing instances rebalancing: no accepted record is skipped, none is routed twice.

A fault run found accepted mail that was never routed: an instance whose batch was in its
linger when a second instance joined dropped the batch, but its second fetch had already
taken records of the new assignment, so its position stood past records it never routed and
the next transaction committed past them. Here instance A takes a first small batch and
lingers on it for longer than the rebalance takes, while instance B joins.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import REGISTRY
from routing_support import accepted_message, create_topics, produce_accepted, read_topic

from relaystream.core.kafka.topics import TopicCatalog
from relaystream.core.kafka.transactional_loop import TransactionalLoop
from relaystream.core.runtime.settings import HostPort, RoutingSettings, RuntimeSettings, Settings
from relaystream.routing.router import Routed, Router
from relaystream.routing.service import (
    accepted_consumer,
    load_policy,
    output_partitions,
    routing_loop,
    transactional_producer,
)

# Longer than a rebalance takes (heartbeats every 3 s tell A to rejoin), so that A's second
# fetch, at the end of its linger, comes after the new assignment was made.
LONG_LINGER_SECONDS = 8.0


@asynccontextmanager
async def routing_instance(
    bootstrap: str, prefix: str, topics: TopicCatalog, name: str, linger: float
) -> AsyncIterator[TransactionalLoop[Routed]]:
    settings = Settings(
        runtime=RuntimeSettings(
            kafka_bootstrap=bootstrap, topic_prefix=prefix, http_bind=HostPort("127.0.0.1", 0)
        ),
        routing=RoutingSettings(transactional_id=f"{prefix}routing-{name}"),
    )
    producer = transactional_producer(settings, topics, name)
    await producer.start()
    consumer = accepted_consumer(settings, topics, name)
    router = Router(
        policy=load_policy(settings),
        topics=topics,
        partitions=await output_partitions(producer, topics),
        service="routing",
    )
    loop = routing_loop(
        consumer=consumer,
        producer=producer,
        router=router,
        group=topics.group_id("routing"),
        max_records=500,
        linger=linger,
    )
    consumer.subscribe([topics.accepted.name], listener=loop.listener)
    await consumer.start()
    stop = asyncio.Event()
    running = asyncio.create_task(loop.run(stop))
    try:
        yield loop
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(running, 60)
        await consumer.stop()
        await producer.stop()


async def wait_until(condition: object, within: float) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_a_batch_dropped_at_a_rebalance_is_routed_after_all_and_once(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topics = await create_topics(kafka_bootstrap, topic_prefix)
    first = [accepted_message(f"a{i}@first.example") for i in range(6)]
    later = [accepted_message(f"b{i}-{uuid.uuid4().hex[:6]}@later.example") for i in range(200)]
    async with routing_instance(
        kafka_bootstrap, topic_prefix, topics, "a", LONG_LINGER_SECONDS
    ) as instance_a:
        await wait_until(instance_a.ready, 60)
        await produce_accepted(kafka_bootstrap, topics, first)
        await asyncio.sleep(1.0)  # A has fetched `first` and lingers on it
        await produce_accepted(kafka_bootstrap, topics, later)
        async with routing_instance(kafka_bootstrap, topic_prefix, topics, "b", 0.03):
            expected = {m["id"] for m in first + later}
            routed: Counter[str] = Counter()
            for _ in range(90):
                decisions = await read_topic(kafka_bootstrap, topics.decisions)
                routed = Counter(r.value["id"] for r in decisions)
                if set(routed) >= expected:
                    break
                await asyncio.sleep(1.0)
            missing = expected - set(routed)
            assert not missing, f"{len(missing)} accepted messages were never routed"
            # Exactly once, across both instances and the rebalance.
            assert {i: n for i, n in routed.items() if n > 1} == {}
    # The case under test happened: A dropped a batch fetched across the rebalance.
    rewound = REGISTRY.get_sample_value(
        "relaystream_kafka_rewound_batches_total", {"group": topics.group_id("routing")}
    )
    assert rewound is not None and rewound >= 1
