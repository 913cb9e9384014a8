"""Routing decisions per second on a local broker: policy plus Kafka in and out.

    .venv/bin/python bench/routing_bench.py --bootstrap 127.0.0.1:9092 [--messages 50000]
        [--content-size 2000] [--batch-records 2000]
        [--policy tests/policies/seed_routing_domain.lua]

Pre-produces N MessageAccepted on fresh topics, starts the routing service in this process,
and times from the start until N committed QueuedMessage records are on `queued` (the reader
runs in a separate process, read_committed, so it does not share the service's event loop).
Without --bootstrap a temporary broker is started (slow: the JVM needs tens of seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from relaystream.core.events.codec import encode
from relaystream.core.events.meta import encode_meta
from relaystream.core.kafka.admin import ensure_topics
from relaystream.core.kafka.producer import EventProducer
from relaystream.core.kafka.topics import TopicCatalog, TopicSettings, declare_topics
from relaystream.core.runtime import event_loop
from relaystream.core.runtime.logging import configure_logging
from relaystream.core.runtime.service import ServiceRuntime, run_service
from relaystream.core.runtime.settings import HostPort, RoutingSettings, RuntimeSettings, Settings
from relaystream.routing.service import SERVICE_NAME, routing_main

DEFAULT_POLICY = Path(__file__).parent.parent / "tests" / "policies" / "seed_routing_domain.lua"


def accepted(index: int, content: bytes) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "sender": "sender@origin.example",
        "recipient": f"user{index}@domain{index % 100}.example",
        "content": content,
        "meta": encode_meta({"reception_protocol": "ESMTP", "tenant": f"t{index % 7}"}),
        "reception_protocol": "ESMTP",
        "received_at": datetime.now(UTC),
        "transaction_id": None,
    }


async def preproduce(bootstrap: str, topics: TopicCatalog, count: int, size: int) -> None:
    content = b"From: a@origin.example\r\nSubject: bench\r\n\r\n" + b"x" * size
    async with EventProducer(bootstrap, client_id="bench-ingest") as producer:
        for start in range(0, count, 5000):
            batch = [accepted(i, content) for i in range(start, min(count, start + 5000))]
            await asyncio.gather(
                *(
                    producer.send(topics.accepted.name, encode("MessageAccepted", m), key=m["id"])
                    for m in batch
                )
            )


def count_queued(bootstrap: str, topic: str, count: int, done: Any) -> None:
    """In a child process: read `topic` until `count` records arrived; report when the first
    and the last arrived."""

    async def read() -> None:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        await consumer.start()
        seen = 0
        first = None
        try:
            while seen < count:
                batch = await consumer.getmany(timeout_ms=100, max_records=10_000)
                seen += sum(len(records) for records in batch.values())
                if seen and first is None:
                    first = time.time()
        finally:
            await consumer.stop()
        done.put((first, time.time()))

    asyncio.run(read())


async def bench(args: argparse.Namespace, bootstrap: str) -> None:
    prefix = f"bench.{uuid.uuid4().hex[:8]}."
    topics = declare_topics(
        TopicSettings(prefix=prefix, partitions=args.partitions, queue_partitions=6)
    )
    await ensure_topics(bootstrap, topics)
    await preproduce(bootstrap, topics, args.messages, args.content_size)
    print(f"pre-produced {args.messages} MessageAccepted ({args.content_size} byte bodies)")

    done: Any = multiprocessing.get_context("spawn").Queue()
    reader = multiprocessing.get_context("spawn").Process(
        target=count_queued, args=(bootstrap, topics.queued.name, args.messages, done)
    )
    reader.start()
    settings = Settings(
        runtime=RuntimeSettings(
            kafka_bootstrap=bootstrap,
            topic_prefix=prefix,
            http_bind=HostPort("127.0.0.1", 0),
            log_level="WARNING",
        ),
        routing=RoutingSettings(policy_path=args.policy, max_batch_records=args.batch_records),
    )
    configure_logging(SERVICE_NAME, "WARNING")
    runtimes: list[ServiceRuntime] = []
    started = time.time()
    service = asyncio.create_task(
        run_service(
            SERVICE_NAME,
            routing_main(settings),
            settings.runtime,
            handle_signals=False,
            runtime_ready=runtimes.append,
        )
    )
    first, finished = await asyncio.to_thread(done.get)
    elapsed = finished - started
    steady = finished - first
    runtimes[0].request_shutdown("bench over")
    await service
    reader.join()
    print(f"{args.messages} decisions in {elapsed:.2f} s (includes start-up and group join)")
    print(f"decisions/s: {args.messages / elapsed:,.0f}")
    # From the first committed decision on: the rate once the group has joined.
    print(f"decisions/s after the first commit: {(args.messages - 1) / steady:,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", help="a running broker; default: start a temporary one")
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--content-size", type=int, default=2_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--batch-records", type=int, default=RoutingSettings().max_batch_records)
    parser.add_argument("--policy", type=Path, default=DEFAULT_POLICY)
    args = parser.parse_args()
    if args.bootstrap:
        event_loop.run(bench(args, args.bootstrap))
        return
    from relaystream.devkit.broker import LocalKafka, free_loopback_ports

    with tempfile.TemporaryDirectory() as state:
        broker = LocalKafka(state_dir=Path(state))
        port, controller_port = free_loopback_ports(2)
        bootstrap = broker.start(
            port=port, controller_port=controller_port, data_dir=Path(state) / "data"
        )
        try:
            event_loop.run(bench(args, bootstrap))
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
