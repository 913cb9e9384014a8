"""How long the scheduler takes to rebuild its state from `queued`, and how much memory it holds.

    .venv/bin/python devkit/bench/scheduler_rebuild_bench.py [--count 1000000]
        [--bootstrap HOST:PORT] [--partitions 6] [--content-size 1024] [--queues 1000]
        [--reuse-prefix PREFIX]

Without --bootstrap a local broker is started in a temporary directory (and stopped after).
It writes `count` QueuedMessage records (content of `content-size` bytes, spread over `queues`
scheduled queues and the next 24 hours of due times) to a fresh `queued` topic, then runs the
service's own rebuild (`rebuild.build_partition` of every partition, concurrently, as an
instance given them all builds them) and prints its time, each partition's, the process RSS it
added, bytes per waiting message and the process's CPU seconds (the broker's not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaProducer

from relaystream.core.events.codec import encode
from relaystream.core.kafka.admin import ensure_topics
from relaystream.core.kafka.topics import TopicSettings, declare_topics, partition_for_queue
from relaystream.core.runtime import event_loop
from relaystream.scheduling.rebuild import build_partition
from relaystream_devkit.broker import LocalKafka, free_loopback_ports

TEMPLATE_ID = "0" * 32
DUE_VARIANTS = 10


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def templates(queue: str, content_size: int, now_ms: int, spread_ms: int) -> list[bytes]:
    """Encoded records of one queue with the id placeholder, one per due-time variant.

    Encoding a million records through the validating codec would dominate the benchmark's
    set-up; the id has a fixed length, so it is swapped into a pre-encoded template instead.
    """
    found = []
    for variant in range(DUE_VARIANTS):
        due = now_ms + spread_ms + variant * 86_400_000 // DUE_VARIANTS
        record = {
            "id": TEMPLATE_ID,
            "queue": queue,
            "sender": "sender@origin.example",
            "recipient": f"user@{queue}",
            "content": b"x" * content_size,
            "meta": {"tenant": '"acme"', "campaign": '"spring"'},
            "created_at": datetime.fromtimestamp(now_ms / 1000, UTC),
            "due_at": datetime.fromtimestamp(due / 1000, UTC),
            "attempts": 0,
            "last_response": None,
        }
        found.append(encode("QueuedMessage", record))
    return found


async def produce(bootstrap: str, topic: str, args: argparse.Namespace) -> None:
    now_ms = int(time.time() * 1000)
    queues = [f"q{n}.example" for n in range(args.queues)]
    encoded = {q: templates(q, args.content_size, now_ms, n * 60_000) for n, q in enumerate(queues)}
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks=1,
        linger_ms=20,
        max_batch_size=1024 * 1024,
        max_request_size=8 * 1024 * 1024,
        compression_type=None,
    )
    await producer.start()
    started = time.monotonic()
    try:
        pending = []
        for n in range(args.count):
            queue = queues[n % len(queues)]
            message_id = uuid.uuid4().hex
            variants = encoded[queue]
            value = variants[n % len(variants)].replace(TEMPLATE_ID.encode(), message_id.encode())
            pending.append(
                await producer.send(
                    topic,
                    value,
                    key=message_id.encode(),
                    partition=partition_for_queue(queue, args.partitions),
                )
            )
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    print(f"produced {args.count:,} records in {time.monotonic() - started:.1f} s")


async def bench(bootstrap: str, args: argparse.Namespace) -> None:
    prefix = args.reuse_prefix or f"bench.{uuid.uuid4().hex[:8]}."
    topics = declare_topics(TopicSettings(prefix=prefix, queue_partitions=args.partitions))
    if args.reuse_prefix is None:
        await ensure_topics(bootstrap, [topics.queued, topics.attempts])
        await produce(bootstrap, topics.queued.name, args)
        print(f"topic prefix:          {prefix} (rebuild again: --reuse-prefix {prefix})")

    gc.collect()
    rss_before = rss_bytes()
    started = time.monotonic()
    cpu_started = time.process_time()
    now_ms = int(time.time() * 1000)
    built = await asyncio.gather(
        *(
            build_partition(
                partition,
                bootstrap=bootstrap,
                topics=topics,
                lease_ms=900_000,
                now_ms=now_ms,
                client_id="rebuild-bench",
            )
            for partition in range(args.partitions)
        )
    )
    total_seconds = time.monotonic() - started
    cpu_seconds = time.process_time() - cpu_started
    gc.collect()
    held = rss_bytes() - rss_before
    count = sum(one.scheduler.state.message_count for one in built)
    print(f"messages rebuilt:      {count:,}")
    for one in built:
        part = one.scheduler
        print(
            f"  partition {part.partition}:         {part.state.message_count:,} messages"
            f" in {part.build_seconds:.1f} s"
        )
    print(f"rebuild total:         {total_seconds:.1f} s ({count / total_seconds:,.0f} records/s)")
    print(f"rebuild CPU:           {cpu_seconds:.1f} s of this process")
    print(
        f"state RSS:             {held / 2**20:,.0f} MiB ({held / max(count, 1):.0f} bytes/message)"
    )
    per_million = total_seconds * 1_000_000 / max(count, 1)
    print(f"per 1M messages:       {per_million:.1f} s (target < 15 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--bootstrap", help="an existing broker; default: start a local one")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--content-size", type=int, default=1024)
    parser.add_argument("--queues", type=int, default=1000)
    parser.add_argument(
        "--reuse-prefix",
        help="rebuild the topics an earlier run with --bootstrap wrote under this prefix "
        "(nothing produced; the due times are that run's)",
    )
    args = parser.parse_args()
    if args.bootstrap:
        event_loop.run(bench(args.bootstrap, args))
        return
    with tempfile.TemporaryDirectory(prefix="rebuild-bench-") as state_dir:
        broker = LocalKafka(state_dir=Path(state_dir))
        port, controller_port = free_loopback_ports(2)
        bootstrap = broker.start(
            port=port, controller_port=controller_port, data_dir=Path(state_dir) / "data"
        )
        try:
            event_loop.run(bench(bootstrap, args))
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
