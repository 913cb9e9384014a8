"""The service kit against a real Kafka broker and real HTTP on loopback.

Commits survive a restart, poison records go to dead-letter while the consumer goes on,
SIGTERM commits only the finished prefix, and the probes answer as Kubernetes expects.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from relaystream.core.kafka.consumer import ConsumedRecord, EventConsumer
from relaystream.core.kafka.dead_letter import DeadLetters, RecordRejected
from relaystream.core.kafka.producer import EventProducer
from relaystream.core.runtime.health import HealthServer
from relaystream.core.runtime.service import (
    EXIT_FAILED,
    EXIT_OK,
    ServiceRuntime,
    ServiceSpec,
    run_service,
)
from relaystream.core.runtime.settings import HostPort, RuntimeSettings, Settings

WAIT_SECONDS = 60.0


async def create_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def committed_offsets(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in offsets.items()}


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[EventProducer]:
    async with EventProducer(kafka_bootstrap, client_id="test") as started:
        yield started


def identity(raw: bytes) -> bytes:
    return raw


def bytes_consumer(bootstrap: str, group: str, topic: str) -> EventConsumer[bytes]:
    return EventConsumer(
        bootstrap, group_id=group, topics=[topic], decode=identity, client_id="test"
    )


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` (state changed by handler tasks) until it holds; fail after a while."""
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                if condition():
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


async def run_until(
    consumer: EventConsumer[bytes],
    handler: Callable[[ConsumedRecord[bytes]], Awaitable[None]],
    done: Callable[[], bool],
    concurrency: int = 1,
) -> None:
    """Run the consumer until `done()`, then stop it gracefully (drain and commit)."""
    stop = asyncio.Event()
    running = asyncio.create_task(consumer.run(handler, concurrency=concurrency, stop=stop))
    try:
        await wait_until(lambda: done() or running.done(), "records")
    finally:
        stop.set()
        await running


async def test_committed_offsets_survive_a_consumer_restart(
    kafka_bootstrap: str, topic_prefix: str, producer: EventProducer
) -> None:
    topic, group = f"{topic_prefix}work", f"{topic_prefix}group"
    await create_topic(kafka_bootstrap, topic, partitions=3)
    for n in range(30):
        await producer.send(topic, f"first-{n}".encode(), key=f"k{n}")

    first: list[bytes] = []

    async def collect_first(record: ConsumedRecord[bytes]) -> None:
        assert record.value is not None
        first.append(record.value)

    async with bytes_consumer(kafka_bootstrap, group, topic) as consumer:
        await run_until(consumer, collect_first, lambda: len(first) >= 30, concurrency=4)
    assert sorted(first) == sorted(f"first-{n}".encode() for n in range(30))
    committed = await committed_offsets(kafka_bootstrap, group)
    assert sum(committed.values()) == 30

    for n in range(5):
        await producer.send(topic, f"second-{n}".encode(), key=f"k{n}")
    second: list[bytes] = []

    async def collect_second(record: ConsumedRecord[bytes]) -> None:
        assert record.value is not None
        second.append(record.value)

    async with bytes_consumer(kafka_bootstrap, group, topic) as consumer:
        await run_until(consumer, collect_second, lambda: len(second) >= 5)
        # Give a wrongly rewound consumer the chance to deliver old records too.
        await asyncio.sleep(0.5)
    assert sorted(second) == sorted(f"second-{n}".encode() for n in range(5))
    assert sum((await committed_offsets(kafka_bootstrap, group)).values()) == 35


async def test_tombstones_and_explicit_partitions(
    kafka_bootstrap: str, topic_prefix: str, producer: EventProducer
) -> None:
    topic, group = f"{topic_prefix}queued", f"{topic_prefix}group"
    await create_topic(kafka_bootstrap, topic, partitions=4)
    assert await producer.partitions_for(topic) == 4
    stored = await producer.send(topic, b"payload", key="message-1", partition=2)
    deleted = await producer.send(topic, None, key="message-1", partition=2)
    assert (stored.partition, deleted.partition) == (2, 2)
    assert deleted.offset == stored.offset + 1

    seen: list[ConsumedRecord[bytes]] = []

    async def collect(record: ConsumedRecord[bytes]) -> None:
        seen.append(record)

    async with bytes_consumer(kafka_bootstrap, group, topic) as consumer:
        await run_until(consumer, collect, lambda: len(seen) >= 2)
    assert [(r.partition, r.key, r.value) for r in seen] == [
        (2, b"message-1", b"payload"),
        (2, b"message-1", None),
    ]


async def test_poison_record_goes_to_dead_letter_and_the_consumer_goes_on(
    kafka_bootstrap: str, topic_prefix: str, producer: EventProducer
) -> None:
    from relaystream.core.events import codec

    topic, dead_topic = f"{topic_prefix}accepted", f"{topic_prefix}dead-letter"
    group = f"{topic_prefix}group"
    await create_topic(kafka_bootstrap, topic)
    await create_topic(kafka_bootstrap, dead_topic)

    def good(n: int) -> bytes:
        record = {
            "source_topic": "upstream",
            "source_partition": 0,
            "source_offset": n,
            "key": None,
            "value": None,
            "reason": f"good record {n}",
            "error_type": "none",
            "service": "test",
            "failed_at": 0,
        }
        encoded: bytes = codec.encode("DeadLetter", record)
        return encoded

    await producer.send(topic, good(0), key="a")
    await producer.send(topic, b"\xc3\x01garbage that is no Avro", key="poison")
    await producer.send(topic, good(2), key="b")
    await producer.send(topic, good(3), key="invalid")
    await producer.send(topic, good(4), key="c")

    handled: list[int] = []

    async def handle(record: ConsumedRecord[tuple[str, dict[str, object]]]) -> None:
        if record.key == b"invalid":
            raise RecordRejected("recipient domain is empty", "validation")
        assert record.value is not None
        handled.append(record.offset)

    dead_letters = DeadLetters(producer, topic=dead_topic, service="routing", encode=codec.encode)
    consumer = EventConsumer(
        kafka_bootstrap,
        group_id=group,
        topics=[topic],
        decode=codec.decode,
        reject_on=(codec.DecodeError,),
        dead_letters=dead_letters,
        client_id="test",
    )
    stop = asyncio.Event()
    async with consumer:
        running = asyncio.create_task(consumer.run(handle, concurrency=2, stop=stop))
        await wait_until(lambda: len(handled) >= 3 or running.done(), "good records")
        stop.set()
        await running
    assert sorted(handled) == [0, 2, 4]
    assert await committed_offsets(kafka_bootstrap, group) == {TopicPartition(topic, 0): 5}

    reader = AIOKafkaConsumer(
        dead_topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await reader.start()
    try:
        fetched = await reader.getmany(timeout_ms=10_000)
        records = [r for batch in fetched.values() for r in batch]
        while len(records) < 2:
            more = await reader.getmany(timeout_ms=10_000)
            assert more, "dead letters missing"
            records += [r for batch in more.values() for r in batch]
    finally:
        await reader.stop()
    letters = sorted((codec.decode(r.value) for r in records), key=lambda d: d[1]["source_offset"])
    assert [name for name, _ in letters] == ["DeadLetter", "DeadLetter"]
    poison, invalid = (fields for _, fields in letters)
    assert poison["source_topic"] == topic
    assert (poison["source_partition"], poison["source_offset"]) == (0, 1)
    assert poison["key"] == b"poison"
    assert poison["value"] == b"\xc3\x01garbage that is no Avro"
    assert poison["error_type"] == "decode"
    assert poison["reason"]
    assert poison["service"] == "routing"
    assert (invalid["source_offset"], invalid["error_type"]) == (3, "validation")
    assert invalid["reason"] == "recipient domain is empty"


def service_settings(bootstrap: str, grace: float) -> Settings:
    runtime = replace(
        RuntimeSettings(),
        kafka_bootstrap=bootstrap,
        http_bind=HostPort("127.0.0.1", 0),
        shutdown_grace_seconds=grace,
    )
    return Settings(runtime=runtime)


async def test_sigterm_commits_only_the_finished_prefix(
    kafka_bootstrap: str, topic_prefix: str, producer: EventProducer
) -> None:
    topic, group = f"{topic_prefix}attempts", f"{topic_prefix}group"
    await create_topic(kafka_bootstrap, topic)
    for n in range(10):
        await producer.send(topic, f"attempt-{n}".encode())

    finished: list[int] = []
    started: list[int] = []
    runtimes: list[ServiceRuntime] = []

    async def slow_at_three(record: ConsumedRecord[bytes]) -> None:
        started.append(record.offset)
        if record.offset == 3:
            await asyncio.Event().wait()  # never finishes: cancelled when the grace runs out
        finished.append(record.offset)

    async def main(runtime: ServiceRuntime) -> None:
        async with bytes_consumer(kafka_bootstrap, group, topic) as consumer:
            await consumer.run(slow_at_three, concurrency=4, stop=runtime.shutdown_requested)

    service = asyncio.create_task(
        run_service(
            ServiceSpec("delivery", main),
            service_settings(kafka_bootstrap, grace=1.0),
            runtime_ready=runtimes.append,
        )
    )
    await wait_until(lambda: len(finished) >= 9 or service.done(), "nine records")
    assert 3 in started and 3 not in finished
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(service, WAIT_SECONDS) == EXIT_FAILED  # grace ran out
    assert runtimes[0].shutdown_reason == "SIGTERM"
    assert await committed_offsets(kafka_bootstrap, group) == {TopicPartition(topic, 0): 3}

    redelivered: list[int] = []

    async def collect(record: ConsumedRecord[bytes]) -> None:
        redelivered.append(record.offset)

    async with bytes_consumer(kafka_bootstrap, group, topic) as consumer:
        await run_until(consumer, collect, lambda: len(redelivered) >= 7)
    assert redelivered == list(range(3, 10))
    assert await committed_offsets(kafka_bootstrap, group) == {TopicPartition(topic, 0): 10}


async def test_graceful_shutdown_within_the_grace_period_commits_everything(
    kafka_bootstrap: str, topic_prefix: str, producer: EventProducer
) -> None:
    topic, group = f"{topic_prefix}outcomes", f"{topic_prefix}group"
    await create_topic(kafka_bootstrap, topic)
    for n in range(6):
        await producer.send(topic, f"outcome-{n}".encode())
    release = asyncio.Event()
    started: list[int] = []
    runtimes: list[ServiceRuntime] = []

    async def wait_for_release(record: ConsumedRecord[bytes]) -> None:
        started.append(record.offset)
        await release.wait()

    async def main(runtime: ServiceRuntime) -> None:
        async with bytes_consumer(kafka_bootstrap, group, topic) as consumer:
            await consumer.run(wait_for_release, concurrency=6, stop=runtime.shutdown_requested)

    service = asyncio.create_task(
        run_service(
            ServiceSpec("scheduling", main),
            service_settings(kafka_bootstrap, grace=30.0),
            runtime_ready=runtimes.append,
        )
    )
    await wait_until(lambda: len(started) >= 6 or service.done(), "six in flight")
    runtimes[0].request_shutdown("test")
    await asyncio.sleep(0.2)
    assert not service.done()  # still draining in-flight records
    release.set()
    assert await asyncio.wait_for(service, WAIT_SECONDS) == EXIT_OK
    assert await committed_offsets(kafka_bootstrap, group) == {TopicPartition(topic, 0): 6}


async def test_probes_and_metrics_over_http(
    kafka_bootstrap: str, topic_prefix: str, producer: EventProducer
) -> None:
    topic, group = f"{topic_prefix}decisions", f"{topic_prefix}group"
    await create_topic(kafka_bootstrap, topic, partitions=2)
    for n in range(4):
        await producer.send(topic, f"decision-{n}".encode(), key=f"m{n}")
    go = asyncio.Event()
    runtimes: list[ServiceRuntime] = []
    handled: list[int] = []

    async def handle(record: ConsumedRecord[bytes]) -> None:
        handled.append(record.offset)

    async def main(runtime: ServiceRuntime) -> None:
        await go.wait()
        async with bytes_consumer(kafka_bootstrap, group, topic) as consumer:
            runtime.health.add_readiness_check("consumer caught up", consumer.caught_up)
            runtime.health.set_ready(True)
            await consumer.run(handle, concurrency=2, stop=runtime.shutdown_requested)

    service = asyncio.create_task(
        run_service(
            ServiceSpec("routing", main),
            service_settings(kafka_bootstrap, grace=10.0),
            handle_signals=False,
            runtime_ready=runtimes.append,
        )
    )
    await wait_until(lambda: bool(runtimes), "the health endpoint")
    base = f"http://127.0.0.1:{runtimes[0].health.port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/healthz") as response:
            assert response.status == 200
        async with http.get(f"{base}/readyz") as response:
            assert response.status == 503
            assert (await response.json())["ready"] is False
        go.set()
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                async with http.get(f"{base}/readyz") as response:
                    if response.status == 200:
                        break
                await asyncio.sleep(0.1)
        await wait_until(lambda: len(handled) >= 4, "records handled")
        async with http.get(f"{base}/metrics") as response:
            assert response.status == 200
            metrics = await response.text()
        for name in (
            "relaystream_kafka_consumed_records_total",
            "relaystream_kafka_produced_records_total",
            "relaystream_kafka_dead_lettered_records_total",
            "relaystream_kafka_consumer_lag_records",
            "relaystream_kafka_records_in_flight",
            "relaystream_kafka_commits_total",
        ):
            assert f"# TYPE {name.removesuffix('_total')}" in metrics
        assert (
            f'relaystream_kafka_consumed_records_total{{group="{group}",topic="{topic}"}} 4.0'
            in (metrics)
        )
        runtimes[0].request_shutdown("test")
        assert await asyncio.wait_for(service, WAIT_SECONDS) == EXIT_OK
        with pytest.raises(aiohttp.ClientConnectionError):
            async with http.get(f"{base}/healthz"):
                pass


async def test_failing_readiness_and_liveness_checks_are_named() -> None:
    health = HealthServer(HostPort("127.0.0.1", 0))
    await health.start()
    try:
        health.set_ready(True)
        alive = True

        async def consumer_caught_up() -> bool:
            return False

        health.add_readiness_check("consumer caught up", consumer_caught_up)
        health.add_liveness_check("loop responsive", lambda: alive)
        base = f"http://127.0.0.1:{health.port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/readyz") as response:
                assert response.status == 503
                assert (await response.json())["reasons"] == ["consumer caught up"]
            async with http.get(f"{base}/healthz") as response:
                assert response.status == 200
            alive = False
            async with http.get(f"{base}/healthz") as response:
                assert response.status == 503
                assert (await response.json())["failing"] == ["loop responsive"]
    finally:
        await health.stop()


async def test_rebalance_drains_and_commits_revoked_partitions(
    kafka_bootstrap: str, topic_prefix: str, producer: EventProducer
) -> None:
    topic, group = f"{topic_prefix}rebalanced", f"{topic_prefix}group"
    await create_topic(kafka_bootstrap, topic, partitions=4)
    for n in range(120):
        await producer.send(topic, f"record-{n}".encode(), partition=n % 4)
    # Alone, the first member needs ~6 s: longer than the 3 s heartbeat after which it learns
    # of the second member's join, so the rebalance happens while records are in flight.
    handled: dict[str, list[tuple[int, int]]] = {"a": [], "b": []}

    def slow_handler(member: str) -> Callable[[ConsumedRecord[bytes]], Awaitable[None]]:
        async def handle(record: ConsumedRecord[bytes]) -> None:
            await asyncio.sleep(0.1)
            handled[member].append((record.partition, record.offset))

        return handle

    stop = asyncio.Event()
    async with (
        bytes_consumer(kafka_bootstrap, group, topic) as first,
        bytes_consumer(kafka_bootstrap, group, topic) as second,
    ):
        running_a = asyncio.create_task(first.run(slow_handler("a"), concurrency=2, stop=stop))
        await wait_until(lambda: len(handled["a"]) >= 5, "the first member to start")
        running_b = asyncio.create_task(second.run(slow_handler("b"), concurrency=2, stop=stop))
        await wait_until(
            lambda: len(handled["a"]) + len(handled["b"]) >= 120 and bool(handled["b"]),
            "all records across both members",
        )
        await asyncio.sleep(0.5)  # a duplicate delivery would show up now
        stop.set()
        await asyncio.gather(running_a, running_b)
        assert first.assignment().isdisjoint(second.assignment())
    everything = handled["a"] + handled["b"]
    # Revoked partitions drained and committed before moving: nothing was handled twice.
    assert sorted(everything) == sorted({(n % 4, n // 4) for n in range(120)})
    committed = await committed_offsets(kafka_bootstrap, group)
    assert committed == {TopicPartition(topic, p): 30 for p in range(4)}


async def test_a_failing_handler_stops_the_consumer_without_committing_its_record(
    kafka_bootstrap: str, topic_prefix: str, producer: EventProducer
) -> None:
    topic, group = f"{topic_prefix}failing", f"{topic_prefix}group"
    await create_topic(kafka_bootstrap, topic)
    for n in range(5):
        await producer.send(topic, f"record-{n}".encode())

    async def fail_at_two(record: ConsumedRecord[bytes]) -> None:
        if record.offset == 2:
            raise ConnectionError("the database is down")

    async with bytes_consumer(kafka_bootstrap, group, topic) as consumer:
        with pytest.raises(ConnectionError, match="the database is down"):
            await asyncio.wait_for(consumer.run(fail_at_two), WAIT_SECONDS)
    # Offsets 0 and 1 finished; 2 failed and must be redelivered, so nothing past it commits.
    assert await committed_offsets(kafka_bootstrap, group) == {TopicPartition(topic, 0): 2}
