"""A bare Faust agent's rate on a local broker, in both processing guarantees: why routing is
not a Faust app (README, "Routing without faust").

    .venv/bin/python devkit/bench/faust_bench.py --bootstrap 127.0.0.1:9092 [--messages 20000]
        [--content-size 2000] [--partitions 6] [--guarantee at_least_once|exactly_once]...

Pre-produces N MessageSubmitted on a fresh topic, then runs in this process a Faust app whose
one agent reads each record through relaystream's Faust codec (integrations/faust_codec.py)
and sends it on to another topic through the same codec: the least a Faust routing stage
would do, without the policy. It times from the app's start until N records are committed on
the output topic (read_committed, in a separate process, as routing_bench.py does), and
prints records/s overall and from the first committed record on, and the CPU per record of
this process and of the broker. Compare with routing_bench.py on the same broker: the routing
service decides, encodes three records and commits a transaction per batch.

Each guarantee runs on its own topics and consumer group. Without --bootstrap a temporary
broker is started (slow: the JVM needs tens of seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import faust
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from relaystream.core.events.codec import encode
from relaystream.core.kafka.producer import EventProducer
from relaystream.core.kafka.submission import submission_event
from relaystream.core.runtime import event_loop
from relaystream.integrations.faust_codec import CODEC_NAME
from relaystream_devkit.bench_measure import committed_arrivals, cpu_seconds, find_processes
from relaystream_devkit.broker import temporary_broker

GUARANTEES = ("at_least_once", "exactly_once")


async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in names]
        )
    finally:
        await admin.close()


async def preproduce(bootstrap: str, topic: str, count: int, size: int) -> None:
    content = b"From: app@origin.example\r\nSubject: bench\r\n\r\n" + b"x" * size
    submitted_at = datetime.now(UTC)
    async with EventProducer(bootstrap, client_id="bench-app") as producer:
        for start in range(0, count, 5000):
            events = [
                submission_event(
                    "app@origin.example",
                    [f"user{index}@domain{index % 100}.example"],
                    content,
                    submission_id=f"s{index}",
                    submitted_at=submitted_at,
                )
                for index in range(start, min(count, start + 5000))
            ]
            sends = [
                producer.send(topic, encode("MessageSubmitted", event), key=event["submission_id"])
                for event in events
            ]
            await asyncio.gather(*sends)


def forwarding_app(
    bootstrap: str, guarantee: str, source: str, target: str, partitions: int
) -> faust.App:
    """A Faust app whose agent decodes each record of `source` and sends it to `target`."""
    app = faust.App(
        f"faust-bench-{uuid.uuid4().hex[:8]}",
        broker=f"kafka://{bootstrap}",
        processing_guarantee=guarantee,
        store="memory://",
        web_enabled=False,
        topic_partitions=partitions,
        consumer_auto_offset_reset="earliest",
    )
    inbound = app.topic(source, key_serializer="raw", value_serializer=CODEC_NAME)
    outbound = app.topic(target, key_serializer="raw", value_serializer=CODEC_NAME)

    @app.agent(inbound)
    async def forward(stream: Any) -> None:
        async for key, value in stream.items():
            await outbound.send(key=key, value=value)

    return app


async def run_guarantee(args: argparse.Namespace, bootstrap: str, guarantee: str) -> None:
    prefix = f"faust-bench.{uuid.uuid4().hex[:8]}."
    source, target = f"{prefix}submit", f"{prefix}forwarded"
    await create_topics(bootstrap, [source, target], args.partitions)
    await preproduce(bootstrap, source, args.messages, args.content_size)

    context = multiprocessing.get_context("spawn")
    done: Any = context.Queue()
    reader = context.Process(
        target=committed_arrivals, args=(bootstrap, target, args.messages, done)
    )
    reader.start()
    app = forwarding_app(bootstrap, guarantee, source, target, args.partitions)
    brokers = find_processes(b"kafka.Kafka")
    cpu_before = cpu_seconds(os.getpid()), sum(cpu_seconds(pid) for pid in brokers)
    started = time.time()
    await app.start()
    try:
        first, finished = await asyncio.to_thread(done.get)
        cpu_after = cpu_seconds(os.getpid()), sum(cpu_seconds(pid) for pid in brokers)
    finally:
        await app.stop()
        reader.join()
    elapsed, steady = finished - started, finished - first
    app_us, broker_us = (
        (after - before) / args.messages * 1e6
        for before, after in zip(cpu_before, cpu_after, strict=True)
    )
    print(
        f"{guarantee}: {args.messages} records in {elapsed:.2f} s (start-up and group join "
        f"included): {args.messages / elapsed:,.0f} records/s; after the first committed "
        f"record {(args.messages - 1) / steady:,.0f} records/s; CPU per record: Faust app "
        f"{app_us:.0f} µs, broker {f'{broker_us:.0f} µs' if brokers else 'not found'}",
        flush=True,
    )


async def bench(args: argparse.Namespace, bootstrap: str) -> None:
    print(
        f"faust-streaming {faust.__version__}: {args.messages} MessageSubmitted "
        f"({args.content_size} byte bodies) over {args.partitions} partitions"
    )
    for guarantee in args.guarantee or GUARANTEES:
        await run_guarantee(args, bootstrap, guarantee)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", help="a running broker; default: start a temporary one")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--content-size", type=int, default=2_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument(
        "--guarantee", action="append", choices=GUARANTEES, help="repeatable; default both"
    )
    args = parser.parse_args()
    # Faust logs each partition assignment at INFO; the figures are what matters here.
    logging.basicConfig(level=logging.WARNING)
    if args.bootstrap:
        event_loop.run(bench(args, args.bootstrap))
        return
    with temporary_broker() as bootstrap:
        event_loop.run(bench(args, bootstrap))


if __name__ == "__main__":
    main()
