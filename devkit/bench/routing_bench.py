"""Routing decisions per second on a local broker: policy plus Kafka in and out.

    .venv/bin/python devkit/bench/routing_bench.py --bootstrap 127.0.0.1:9092 [--messages 50000]
        [--content-size 2000] [--batch-records 2000]
        [--policy tests/policies/seed_routing_domain.lua] [--kafka-only]

Pre-produces N MessageAccepted on fresh topics, starts the routing service in this process,
and times from the start until N committed QueuedMessage records are on `queued` (the reader
runs in a separate process, read_committed, so it does not share the service's event loop).
Without --bootstrap a temporary broker is started (slow: the JVM needs tens of seconds).

--kafka-only routes every message before the clock starts and has the service's router hand
back those records (the same bytes, keys and partitions) instead of deciding again: what is
left is the loop's Kafka work (fetch, produce, transaction, offsets), the floor under any
faster policy or codec.

It also prints the CPU time per decision of the routing service (this process, during the
run) and of the broker (found by its command line): on 2 cores, 20,000 decisions/s leaves
100 µs of CPU per decision for everything on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from relaystream.core.events.codec import encode
from relaystream.core.events.meta import encode_meta
from relaystream.core.kafka.admin import ensure_topics
from relaystream.core.kafka.producer import EventProducer
from relaystream.core.kafka.topics import TopicCatalog, TopicSettings, declare_topics
from relaystream.core.policy import policy_from_file
from relaystream.core.runtime import event_loop
from relaystream.core.runtime.logging import configure_logging
from relaystream.core.runtime.service import ServiceRuntime, run_service
from relaystream.core.runtime.settings import HostPort, RoutingSettings, RuntimeSettings, Settings
from relaystream.routing.router import OutputPartitions, Routed, Router
from relaystream.routing.service import SERVICE, SERVICE_NAME
from relaystream_devkit.bench_measure import committed_arrivals, cpu_seconds, find_processes
from relaystream_devkit.broker import temporary_broker

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_POLICY = REPO_ROOT / "tests" / "policies" / "seed_routing_domain.lua"


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


@dataclass(frozen=True)
class AcceptedRecord:
    """A produced MessageAccepted as the router reads it."""

    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    timestamp: int = 0


async def preproduce(
    bootstrap: str, topics: TopicCatalog, count: int, size: int
) -> list[AcceptedRecord]:
    content = b"From: a@origin.example\r\nSubject: bench\r\n\r\n" + b"x" * size
    produced: list[AcceptedRecord] = []
    async with EventProducer(bootstrap, client_id="bench-ingest") as producer:
        for start in range(0, count, 5000):
            batch = [accepted(i, content) for i in range(start, min(count, start + 5000))]
            values = [encode("MessageAccepted", m) for m in batch]
            await asyncio.gather(
                *(
                    producer.send(topics.accepted.name, value, key=m["id"])
                    for m, value in zip(batch, values, strict=True)
                )
            )
            produced.extend(
                AcceptedRecord(topics.accepted.name, 0, 0, m["id"].encode(), value)
                for m, value in zip(batch, values, strict=True)
            )
    return produced


def route_in_advance(records: list[AcceptedRecord], topics: TopicCatalog, policy: Path) -> None:
    """--kafka-only: decide every record now; the service's router then only looks them up."""
    router = Router(
        policy=policy_from_file(policy),
        topics=topics,
        partitions=OutputPartitions(
            queued=topics.queued.partitions,
            decisions=topics.decisions.partitions,
            log=topics.log.partitions,
            dead_letter=topics.dead_letter.partitions,
        ),
        service=SERVICE_NAME,
    )
    decided = {record.key: router.route(record) for record in records}

    def look_up(self: Router, record: Any) -> Routed:
        return decided[record.key]

    # The bench times the Kafka path alone: routing answers with the decisions made above.
    Router.route = look_up  # type: ignore[method-assign]


async def bench(args: argparse.Namespace, bootstrap: str) -> None:
    prefix = f"bench.{uuid.uuid4().hex[:8]}."
    topics = declare_topics(
        TopicSettings(prefix=prefix, partitions=args.partitions, queue_partitions=6)
    )
    await ensure_topics(bootstrap, topics)
    produced = await preproduce(bootstrap, topics, args.messages, args.content_size)
    print(f"pre-produced {args.messages} MessageAccepted ({args.content_size} byte bodies)")
    if args.kafka_only:
        route_in_advance(produced, topics, args.policy)
        print("--kafka-only: every message was routed in advance; the service only looks it up")

    done: Any = multiprocessing.get_context("spawn").Queue()
    reader = multiprocessing.get_context("spawn").Process(
        target=committed_arrivals, args=(bootstrap, topics.queued.name, args.messages, done)
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
    brokers = find_processes(b"kafka.Kafka")
    cpu_before = cpu_seconds(os.getpid()), sum(cpu_seconds(pid) for pid in brokers)
    started = time.time()
    service = asyncio.create_task(
        run_service(SERVICE, settings, handle_signals=False, runtime_ready=runtimes.append)
    )
    first, finished = await asyncio.to_thread(done.get)
    elapsed = finished - started
    steady = finished - first
    cpu_after = cpu_seconds(os.getpid()), sum(cpu_seconds(pid) for pid in brokers)
    runtimes[0].request_shutdown("bench over")
    await service
    reader.join()
    print(f"{args.messages} decisions in {elapsed:.2f} s (includes start-up and group join)")
    print(f"decisions/s: {args.messages / elapsed:,.0f}")
    # From the first committed decision on: the rate once the group has joined.
    print(f"decisions/s after the first commit: {(args.messages - 1) / steady:,.0f}")
    routing_us, broker_us = (
        (after - before) / args.messages * 1e6
        for before, after in zip(cpu_before, cpu_after, strict=True)
    )
    broker_text = f"{broker_us:.0f} µs" if brokers else "not found"
    print(f"CPU per decision: routing {routing_us:.0f} µs, broker {broker_text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", help="a running broker; default: start a temporary one")
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--content-size", type=int, default=2_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--batch-records", type=int, default=RoutingSettings().max_batch_records)
    parser.add_argument("--policy", type=Path, default=DEFAULT_POLICY)
    parser.add_argument(
        "--kafka-only",
        action="store_true",
        help="route in advance: measure the loop's Kafka work alone",
    )
    args = parser.parse_args()
    if args.bootstrap:
        event_loop.run(bench(args, args.bootstrap))
        return
    with temporary_broker() as bootstrap:
        event_loop.run(bench(args, bootstrap))


if __name__ == "__main__":
    main()
