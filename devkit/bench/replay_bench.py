"""Replay speed of `relaystream audit decisions`: decisions per second over a big `decisions`.

    .venv/bin/python devkit/bench/replay_bench.py [--records 1000000] [--bootstrap HOST:PORT]
        [--reuse-prefix PREFIX] [--compression CODEC]

Without --bootstrap it starts a throwaway local broker (relaystream_devkit/broker.py). It writes
`--records` RoutingDecision records to a fresh `decisions` topic, then times the command in
process (output to /dev/null) with a filter matching about 1 % of them, with a tenant filter,
and with no filter: wall time and the process's CPU seconds; then `audit why` of one message
in the topic (when this run wrote it) and of an unknown id (which reads as much: the id's
whole `decisions` partition). Prints numbers; asserts nothing.

Generating a million records through the codec would take longer than replaying them, so the
benchmark encodes a few hundred distinct decisions (domains, tenants, policies) once and writes
copies with a fresh message id patched in: the id is the record's first field, a 32-character
Avro string at a fixed offset, so every copy is a valid record with its own key.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaProducer

from relaystream.cli.main import main as relaystream
from relaystream.core.events.codec import HEADER_SIZE, encode
from relaystream.core.events.examples import example_records
from relaystream.core.events.meta import encode_meta
from relaystream.core.kafka.admin import ensure_topics
from relaystream.core.kafka.producer import compression_type, use_compression
from relaystream.core.kafka.topics import TopicSettings, declare_topics, partition_for_key
from relaystream.core.runtime.settings import KAFKA_COMPRESSION_CODECS
from relaystream_devkit.broker import LocalKafka, free_loopback_ports

DOMAINS = 100  # the --domain filter picks one: about 1 % of the records
TENANTS = 5
POLICIES = 2
ID_OFFSET = HEADER_SIZE + 1  # after the header and the 1-byte length (32 zigzag = 0x40)


def templates() -> list[bytes]:
    """Distinct encoded decisions: every (domain, tenant, policy) combination."""
    base = example_records(1000)["RoutingDecision"]
    found = []
    for d in range(DOMAINS):
        for t in range(TENANTS):
            for p in range(POLICIES):
                domain, tenant = f"domain{d}.example", f"tenant{t}"
                queue = f"spring:{tenant}@{domain}"
                meta = encode_meta({"tenant": tenant, "campaign": "spring"})
                decision = {
                    **base,
                    "id": "0" * 32,
                    "recipient": f"user{d}@{domain}",
                    "meta_before": meta,
                    "meta_after": {**meta, "queue": f'"{queue}"'},
                    "queue": queue,
                    "tenant": tenant,
                    "domain": domain,
                    "policy_hash": f"{p}" * 64,
                }
                data = encode("RoutingDecision", decision)
                assert data[ID_OFFSET - 1 : ID_OFFSET + 32] == b"\x40" + b"0" * 32
                found.append(data)
    return found


def with_id(template: bytes, message_id: bytes) -> bytes:
    return template[:ID_OFFSET] + message_id + template[ID_OFFSET + 32 :]


async def generate(bootstrap: str, topic: str, partitions: int, count: int) -> str:
    """Writes the decisions; returns the id of the last one."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks=1,
        compression_type=compression_type(),
        max_request_size=16 * 1024 * 1024,
    )
    await producer.start()
    try:
        encoded = templates()
        batches = [producer.create_batch() for _ in range(partitions)]
        pending = []
        now_ms = int(time.time() * 1000)
        for n in range(count):
            message_id = uuid.uuid4().hex.encode()
            partition = partition_for_key(message_id, partitions)
            value = with_id(encoded[n % len(encoded)], message_id)
            batch = batches[partition]
            if batch.append(key=message_id, value=value, timestamp=now_ms) is None:
                pending.append(await producer.send_batch(batch, topic, partition=partition))
                batches[partition] = batch = producer.create_batch()
                batch.append(key=message_id, value=value, timestamp=now_ms)
            if len(pending) > 64:
                await asyncio.gather(*pending)
                pending.clear()
        for partition, batch in enumerate(batches):
            if batch.record_count():
                pending.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return message_id.decode()


def timed_audit(bootstrap: str, prefix: str, *args: str) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds of one `audit` run (the machine may be
    shared: CPU seconds move less with the load than wall time)."""
    argv = ["audit", *args, "--bootstrap", bootstrap, "--prefix", prefix]
    started = time.perf_counter()
    cpu_started = time.process_time()
    with (
        open(os.devnull, "w") as sink,
        contextlib.redirect_stdout(sink),
        contextlib.redirect_stderr(sink),
        contextlib.suppress(SystemExit),
    ):
        relaystream(argv)
    return time.perf_counter() - started, time.process_time() - cpu_started


@contextlib.contextmanager
def broker(bootstrap: str | None) -> Iterator[str]:
    if bootstrap is not None:
        yield bootstrap
        return
    with tempfile.TemporaryDirectory(prefix="replay-bench-") as state:
        kafka = LocalKafka(state_dir=Path(state))
        port, controller_port = free_loopback_ports(2)
        print("starting a local broker...", file=sys.stderr)
        address = kafka.start(port=port, controller_port=controller_port, timeout_s=180)
        try:
            yield address
        finally:
            kafka.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--bootstrap", help="an existing broker (default: start one)")
    parser.add_argument(
        "--reuse-prefix",
        help="replay the `decisions` an earlier run with --bootstrap wrote under this prefix "
        "(nothing generated; --records must be that run's)",
    )
    parser.add_argument(
        "--compression",
        choices=KAFKA_COMPRESSION_CODECS,
        default="none",
        help="the codec the decisions are written with (the services' kafka_compression)",
    )
    args = parser.parse_args()
    use_compression(args.compression)
    with broker(args.bootstrap) as bootstrap:
        prefix = args.reuse_prefix or f"bench.{uuid.uuid4().hex[:8]}."
        topics = declare_topics(TopicSettings.local(prefix))
        # `audit why` reads the message's other topics too (empty here).
        asyncio.run(ensure_topics(bootstrap, list(topics)))
        known_id = None
        if args.reuse_prefix is None:
            started = time.perf_counter()
            known_id = asyncio.run(
                generate(
                    bootstrap, topics.decisions.name, topics.decisions.partitions, args.records
                )
            )
            took = time.perf_counter() - started
            print(f"generated {args.records:,} decisions in {took:.1f} s under prefix {prefix}")
        since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        runs = [
            ("--domain (1 % match)", ("--domain", "domain7.example", "--format", "jsonl")),
            ("--tenant (20 % match)", ("--tenant", "tenant3", "--format", "jsonl")),
            ("--since, no filter", ("--since", since, "--format", "table")),
        ]
        for label, filters in runs:
            took, cpu = timed_audit(bootstrap, prefix, "decisions", *filters)
            rate = args.records / took
            print(
                f"audit decisions {label:<24} {took:6.1f} s  {rate:>10,.0f} decisions/s"
                f"  (CPU {cpu:.1f} s)"
            )
        lookups = [("an unknown id", uuid.uuid4().hex)]
        if known_id is not None:
            lookups.insert(0, ("the last id written", known_id))
        for label, message_id in lookups:
            took, cpu = timed_audit(bootstrap, prefix, "why", message_id)
            print(f"audit why {label:<30} {took:6.1f} s  (CPU {cpu:.1f} s)")


if __name__ == "__main__":
    main()
