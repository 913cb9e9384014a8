"""Egress limits hold for the deployment, not per process (issue 19): two delivery processes
share the `attempts` partitions, and a policy sets `connection_limit = 2` and
`max_message_rate = "20/s"` for its sites. Each site's sink counts its concurrent connections
and the time of every message: neither limit is exceeded, although requests for each site
arrive on partitions of both processes. A third site's pool sends from 127.0.0.2 and
127.0.0.3 in its weights' proportion (3:1)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from delivery_sinks import ReceivedMessage, SmtpSink, start_sink
from service_process import ServiceProcess
from test_delivery_service import read_all

from relaystream.core.events.codec import encode
from relaystream.core.kafka.admin import ensure_topics
from relaystream.core.kafka.producer import EventProducer
from relaystream.core.kafka.topics import TopicSettings, declare_topics, partition_for_queue

PARTITIONS = 4
CONNECTION_LIMIT = 2
RATE, BURST = 20, 20  # "20/s": KumoMTA's burst is the limit

POLICY = """
local kumo = require 'kumo'
kumo.on('get_egress_pool', function(name)
  return kumo.make_egress_pool { name = name, entries = {
    { name = 'ip-2', weight = 3 }, { name = 'ip-3', weight = 1 } } }
end)
kumo.on('get_egress_source', function(name)
  local addr = { ['ip-2'] = '127.0.0.2', ['ip-3'] = '127.0.0.3' }
  return kumo.make_egress_source { name = name, source_address = addr[name] }
end)
kumo.on('get_egress_path_config', function(domain, source, site)
  local limited = site:find(':LIMITED_A$') or site:find(':LIMITED_B$')
  return kumo.make_egress_path {
    prohibited_hosts = {}, enable_tls = 'Disabled',
    connection_limit = limited and 2 or 32,
    max_message_rate = limited and '20/s' or nil,
  }
end)
"""


def request(queue: str, n: int, config: dict[str, Any] | None = None) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "id": uuid.uuid4().hex,
        "queue": queue,
        "attempt": 1,
        "sender": "sender@example.com",
        "recipient": f"r{n}@example.com",
        "content": b"Subject: limits\r\n\r\nhello\r\n",
        "meta": {},
        "created_at": now,
        "queue_config": json.dumps(config or {}),
        "released_at": now,
    }


def queues_on_every_partition(site: str, prefix: str) -> list[str]:
    """Queue names (tenant@[site]) that cover every partition of `attempts`."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < PARTITIONS:
        queue = f"{prefix}{n}@[127.0.0.1]:{site}"
        found.setdefault(partition_for_queue(queue, PARTITIONS), queue)
        n += 1
    return list(found.values())


def most_in_any_window(messages: list[ReceivedMessage]) -> list[tuple[int, float]]:
    """For each window between two arrivals: (messages in it, its length in seconds)."""
    times = sorted(message.received_at for message in messages)
    return [
        (j - i + 1, times[j] - times[i]) for i in range(len(times)) for j in range(i, len(times))
    ]


@pytest.fixture
async def sinks() -> AsyncIterator[tuple[SmtpSink, SmtpSink, SmtpSink]]:
    # Slow answers make the connection limit bind; quick ones make the rate bind.
    slow = await start_sink(data_delay=0.3)
    quick = await start_sink()
    pooled = await start_sink()
    yield slow, quick, pooled
    for sink in (slow, quick, pooled):
        await sink.close()


def has_line(path: Path, text: str) -> bool:
    return path.exists() and text in path.read_text(errors="replace")


async def wait_for_line(path: Path, text: str, within: float = 60.0) -> None:
    for _ in range(int(within * 10)):
        if has_line(path, text):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path.name}: no {text!r}")


async def test_limits_hold_across_two_delivery_processes(
    kafka_bootstrap: str,
    topic_prefix: str,
    sinks: tuple[SmtpSink, SmtpSink, SmtpSink],
    tmp_path: Path,
) -> None:
    slow, quick, pooled = sinks
    topics = declare_topics(
        TopicSettings(prefix=topic_prefix, queue_partitions=PARTITIONS, partitions=1)
    )
    await ensure_topics(kafka_bootstrap, topics)
    policy = tmp_path / "policy.lua"
    policy.write_text(
        POLICY.replace("LIMITED_A", str(slow.port)).replace("LIMITED_B", str(quick.port))
    )
    processes = [
        ServiceProcess(
            "delivery",
            bootstrap=kafka_bootstrap,
            prefix=topic_prefix,
            log_path=tmp_path / f"delivery-{n}.log",
            settings={
                "RELAYSTREAM_DELIVERY_POLICY_PATH": str(policy),
                "RELAYSTREAM_KAFKA_GROUP_INSTANCE_ID": f"delivery-{n}",
            },
        )
        for n in range(2)
    ]
    requests = [
        *(request(q, n) for n, q in enumerate(queues_on_every_partition(str(slow.port), "s") * 6)),
        *(
            request(q, n)
            for n, q in enumerate(queues_on_every_partition(str(quick.port), "q") * 20)
        ),
        *(
            request(q, n, {"egress_pool": "pool-p"})
            for n, q in enumerate(queues_on_every_partition(str(pooled.port), "p") * 10)
        ),
    ]
    try:
        for process in processes:
            process.start()
            await process.wait_ready()
            await wait_for_line(tmp_path / f"delivery-{processes.index(process)}.log", "attempts")
        async with EventProducer(kafka_bootstrap, client_id="test") as producer:
            await asyncio.gather(
                *(
                    producer.send(
                        topics.attempts.name,
                        encode("DeliveryRequest", r),
                        key=r["id"],
                        partition=partition_for_queue(r["queue"], PARTITIONS),
                    )
                    for r in requests
                )
            )
        await read_all(kafka_bootstrap, topics.outcomes.name, len(requests))
    finally:
        for process in processes:
            process.terminate()
            process.close()

    assert (len(slow.messages), len(quick.messages), len(pooled.messages)) == (24, 80, 40)
    for sink in (quick, slow):
        for count, seconds in most_in_any_window(sink.messages):
            # A token bucket's bound, with one message of slack for the sink's clock.
            assert count <= BURST + RATE * seconds + 1, (count, seconds)
        assert sink.stats.connections_max_active <= CONNECTION_LIMIT
    # The slow sink needed more than the limit allows: the limit was what held it.
    assert slow.stats.connections_max_active == CONNECTION_LIMIT
    # Both processes delivered (each owns some sites' partitions; requests came to both).
    logs = [(tmp_path / f"delivery-{n}.log").read_text(errors="replace") for n in range(2)]
    assert all("partitions assigned" in text for text in logs)
    peers = Counter(message.peer[0] for message in pooled.messages)
    assert set(peers) == {"127.0.0.2", "127.0.0.3"}
    assert 27 <= peers["127.0.0.2"] <= 33, peers
