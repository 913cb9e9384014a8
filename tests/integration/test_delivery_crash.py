"""Delivery SIGKILLed right after it recorded outcomes: nothing it finished is sent again.

Delivery commits `attempts` offsets about once a second, so a kill just after a burst leaves
the burst's requests uncommitted and the restarted process is handed them again. A fault run
saw 50 duplicates a kill this way. Each request whose DeliveryOutcome is on `outcomes` must
be skipped, so the sink receives every message exactly once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from delivery_sinks import SmtpSink, start_sink
from routing_support import committed_offsets, end_offsets
from service_process import ServiceProcess
from test_delivery_service import delivery_request, read_all

from relaystream.core.events.codec import encode
from relaystream.core.kafka.admin import ensure_topics
from relaystream.core.kafka.producer import EventProducer
from relaystream.core.kafka.topics import TopicSettings, declare_topics, partition_for_queue

MESSAGES = 150
PARTITIONS = 3


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    server = await start_sink()
    yield server
    await server.close()


async def test_requests_whose_outcome_was_written_are_not_resent_after_a_kill(
    kafka_bootstrap: str, topic_prefix: str, sink: SmtpSink, log_path: Path
) -> None:
    topics = declare_topics(
        TopicSettings(prefix=topic_prefix, queue_partitions=PARTITIONS, partitions=1)
    )
    await ensure_topics(kafka_bootstrap, topics)
    delivery = ServiceProcess(
        "delivery",
        bootstrap=kafka_bootstrap,
        prefix=topic_prefix,
        log_path=log_path,
        settings={
            "RELAYSTREAM_DELIVERY_ALLOW_LOOPBACK": "true",
            "RELAYSTREAM_DELIVERY_TLS_MODE": "Disabled",
        },
    )
    # Several queues, so the requests spread over every partition.
    queues = [f"t{n}@[127.0.0.1]:{sink.port}" for n in range(6)]
    requests = [
        delivery_request(uuid.uuid4().hex, queues[n % len(queues)], f"r{n}@example.com")
        for n in range(MESSAGES)
    ]
    try:
        delivery.start()
        await delivery.wait_ready()
        async with EventProducer(kafka_bootstrap, client_id="test-scheduling") as producer:
            await asyncio.gather(
                *(
                    producer.send(
                        topics.attempts.name,
                        encode("DeliveryRequest", request),
                        key=request["id"],
                        partition=partition_for_queue(request["queue"], PARTITIONS),
                    )
                    for request in requests
                )
            )
        await read_all(kafka_bootstrap, topics.outcomes.name, MESSAGES)
        delivery.kill()  # at once: the last second's offsets are not committed
        group = f"{topic_prefix}delivery"
        ends = {p: end for p, end in (await end_offsets(kafka_bootstrap, topics.attempts)).items()}
        committed = await committed_offsets(kafka_bootstrap, group, topics.attempts.name)
        uncommitted = sum(end - committed.get(p, 0) for p, end in ends.items())
        delivery.start()
        await delivery.wait_ready()
        # The restarted process goes through what was handed out again, then commits it.
        for _ in range(60):
            committed = await committed_offsets(kafka_bootstrap, group, topics.attempts.name)
            if all(committed.get(p, 0) >= end for p, end in ends.items()):
                break
            await asyncio.sleep(1.0)
        else:
            raise AssertionError("the restarted delivery did not catch up")
    finally:
        delivery.close()

    assert uncommitted > 0, "the kill came after the commit: the case was not exercised"
    received = Counter(m.recipients[0] for m in sink.messages)
    assert set(received) == {r["recipient"] for r in requests}
    assert {r: n for r, n in received.items() if n > 1} == {}
