"""The scheduling service against a real broker: releases when due, outcomes, expiry, throttle."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from routing_support import committed_offsets, end_offsets
from scheduling_support import (
    TopicWatcher,
    create_topics,
    now_ms,
    queue_message,
    send_outcome,
    set_override,
    settings_for,
)

from relaystream.core.kafka.producer import EventProducer
from relaystream.core.kafka.topics import TopicCatalog
from relaystream.scheduling import metrics
from relaystream.scheduling.config_resolver import default_queue_config
from relaystream.scheduling.scheduler import Scheduler

# Slack for the scheduler's loop and Kafka round trips when asserting "released at its time".
LATE_MS = 3_000


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[EventProducer]:
    async with EventProducer(kafka_bootstrap, client_id="scheduling-test") as producer:
        yield producer


@pytest.fixture
async def topics(kafka_bootstrap: str, topic_prefix: str) -> TopicCatalog:
    return await create_topics(kafka_bootstrap, topic_prefix)


@pytest.fixture
async def scheduler(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicCatalog
) -> AsyncIterator[Scheduler]:
    running = Scheduler(
        settings_for(kafka_bootstrap, topic_prefix), policy_config=default_queue_config
    )
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))
    for _ in range(300):
        if running.ready or task.done():
            break
        await asyncio.sleep(0.1)
    assert running.ready, task.exception() if task.done() else "not ready after 30 s"
    yield running
    stop.set()
    await asyncio.wait_for(task, 30)


@pytest.fixture
async def attempts(kafka_bootstrap: str, topics: TopicCatalog) -> AsyncIterator[TopicWatcher]:
    watcher = TopicWatcher(kafka_bootstrap, topics.attempts, "DeliveryRequest")
    await watcher.start()
    yield watcher
    await watcher.stop()


async def test_messages_are_released_when_due_and_not_before(
    scheduler: Scheduler, producer: EventProducer, topics: TopicCatalog, attempts: TopicWatcher
) -> None:
    start = now_ms()
    dues = {"m-now": start, "m-2s": start + 2_000, "m-4s": start + 4_000}
    for message_id, due in dues.items():
        await queue_message(producer, topics, message_id, due_at=due)
    seen = await attempts.wait_for(3, within=20)
    assert sorted(r.key for r in seen) == sorted(dues)
    for record in seen:
        assert record.value is not None
        assert dues[record.key] <= record.seen_at < dues[record.key] + LATE_MS
        assert record.value["attempt"] == 0
        assert record.value["content"].startswith(f"Subject: {record.key}".encode())
        config = json.loads(record.value["queue_config"])
        assert config["retry_interval"] == 1200
    await asyncio.sleep(1.0)
    assert len(attempts.records) == 3, "a message was released twice"


def spool_fetches() -> float:
    return float(metrics.SPOOL_FETCHES._value.get())


async def test_due_message_is_released_from_the_record_read_waiting_one_is_fetched_back(
    scheduler: Scheduler, producer: EventProducer, topics: TopicCatalog, attempts: TopicWatcher
) -> None:
    before = spool_fetches()
    await queue_message(producer, topics, "m-due", due_at=now_ms())
    (due,) = await attempts.wait_for(1, within=20)
    assert due.value is not None
    assert due.value["content"].startswith(b"Subject: m-due")
    assert spool_fetches() == before, "a message read already due was fetched back"
    await queue_message(producer, topics, "m-later", due_at=now_ms() + 1_500)
    seen = await attempts.wait_for(2, within=20)
    later = next(r for r in seen if r.key == "m-later")
    assert later.value is not None
    assert later.value["content"].startswith(b"Subject: m-later")
    assert spool_fetches() == before + 1, "a waiting message kept its content in memory"


async def test_transient_failure_requeues_with_backoff_then_delivery_tombstones(
    kafka_bootstrap: str,
    topic_prefix: str,
    scheduler: Scheduler,
    producer: EventProducer,
    topics: TopicCatalog,
    attempts: TopicWatcher,
) -> None:
    await set_override(producer, topics, "example.com", {"retry_interval": "2s"})
    await asyncio.sleep(1.0)  # the override reader follows the topic live
    await queue_message(producer, topics, "m1", due_at=now_ms())
    first = await attempts.wait_for(1, within=10)
    assert first and first[0].value is not None
    assert json.loads(first[0].value["queue_config"])["retry_interval"] == 2

    failed_at = now_ms()
    await send_outcome(producer, topics, "m1", 0, "TRANSIENT_FAILURE")
    await send_outcome(producer, topics, "m1", 0, "TRANSIENT_FAILURE")  # a duplicate
    both = await attempts.wait_for(2, within=15)
    assert len(both) == 2
    second = both[1]
    assert second.value is not None and second.value["attempt"] == 1
    # retry_interval 2 s, first retry: 2 s (jitter window 0.1 s truncates to 0).
    assert failed_at + 2_000 <= second.seen_at < failed_at + 2_000 + LATE_MS

    queued = TopicWatcher(kafka_bootstrap, topics.queued, "QueuedMessage")
    await queued.start()
    try:
        await send_outcome(producer, topics, "m1", 1, "DELIVERED")
        for _ in range(100):
            if queued.records and queued.records[-1].value is None:
                break
            await asyncio.sleep(0.1)
        assert queued.records[-1].key == "m1" and queued.records[-1].value is None
        # A duplicate just after: ignored, and the last record on `outcomes` for a while.
        await send_outcome(producer, topics, "m1", 1, "DELIVERED")
        requeued = [r.value for r in queued.records if r.value is not None]
        assert [v["attempts"] for v in requeued] == [0, 1], "the duplicate outcome was applied"
        assert requeued[1]["last_response"]["code"] == 451
    finally:
        await queued.stop()
    await asyncio.sleep(3.0)
    assert len(attempts.records) == 2
    assert scheduler.messages.message_count == 0
    # The applied outcomes are committed within a second or so, also once no more arrive.
    written = {p: end for p, end in (await end_offsets(kafka_bootstrap, topics.outcomes)).items()}
    group = f"{topic_prefix}scheduling"
    committed: dict[int, int] = {}
    for _ in range(50):
        committed = await committed_offsets(kafka_bootstrap, group, topics.outcomes.name)
        if committed == {p: end for p, end in written.items() if end}:
            break
        await asyncio.sleep(0.2)
    assert committed == {p: end for p, end in written.items() if end}


async def test_expiry_after_max_age_logs_expiration(
    kafka_bootstrap: str,
    scheduler: Scheduler,
    producer: EventProducer,
    topics: TopicCatalog,
    attempts: TopicWatcher,
) -> None:
    await set_override(producer, topics, "old.example", {"retry_interval": "2s", "max_age": "3s"})
    await asyncio.sleep(1.0)
    await queue_message(
        producer, topics, "old", queue="old.example", due_at=now_ms(), created_at=now_ms() - 2_000
    )
    assert await attempts.wait_for(1, within=10)
    log = TopicWatcher(kafka_bootstrap, topics.log, "LogRecord")
    await log.start()
    try:
        await send_outcome(producer, topics, "old", 0, "TRANSIENT_FAILURE", queue="old.example")
        records = await log.wait_for(1, within=15)
    finally:
        await log.stop()
    assert len(records) == 1 and records[0].value is not None
    expiration = records[0].value
    assert expiration["type"] == "Expiration"
    assert expiration["response"]["code"] == 551
    assert expiration["response"]["enhanced_code"] == {"class": 5, "subject": 4, "detail": 7}
    assert "max_age" in expiration["response"]["content"]
    assert expiration["num_attempts"] == 1
    for _ in range(50):
        if scheduler.messages.message_count == 0:
            break
        await asyncio.sleep(0.1)
    assert scheduler.messages.message_count == 0
    assert len(attempts.records) == 1


async def test_max_message_rate_throttles_releases(
    scheduler: Scheduler, producer: EventProducer, topics: TopicCatalog, attempts: TopicWatcher
) -> None:
    await set_override(producer, topics, "slow.example", {"max_message_rate": "2/s"})
    await asyncio.sleep(1.0)
    due = now_ms()
    for n in range(8):
        await queue_message(producer, topics, f"s{n}", queue="slow.example", due_at=due)
    seen = await attempts.wait_for(8, within=20)
    assert len(seen) == 8
    first = min(r.seen_at for r in seen)
    # A burst of 2, then 2 per second: the 8th leaves no earlier than 3 s after the first.
    assert max(r.seen_at for r in seen) - first >= 2_500
    times = sorted(r.seen_at for r in seen)
    for index, seen_at in enumerate(times):
        # Allowing 500 ms of measurement slack for the watcher's polling.
        assert index + 1 <= 2 + 2 * (seen_at - first + 500) / 1000
