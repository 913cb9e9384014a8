"""Crash safety: the scheduling service as a real process, killed with SIGKILL and restarted.

Waiting messages must survive (their due times are in the `queued` events), be released at
their original due time (not earlier), and nothing released before the crash may be released
again (the rebuild reads recent `attempts` and treats them as in flight).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from scheduling_support import TopicWatcher, create_topics, now_ms, queue_message
from service_process import ServiceProcess

from relaystream.core.kafka.producer import EventProducer

LATE_MS = 3_000


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[EventProducer]:
    async with EventProducer(kafka_bootstrap, client_id="scheduling-crash-test") as producer:
        yield producer


async def test_sigkill_loses_no_waiting_message_and_releases_none_twice(
    kafka_bootstrap: str, topic_prefix: str, producer: EventProducer, log_path: Path
) -> None:
    topics = await create_topics(kafka_bootstrap, topic_prefix)
    start = now_ms()
    dues = {f"now-{n}": start for n in range(3)}
    dues |= {f"later-{n}": start + 35_000 + n * 2_000 for n in range(5)}
    for message_id, due in dues.items():
        await queue_message(producer, topics, message_id, due_at=due)

    attempts = TopicWatcher(kafka_bootstrap, topics.attempts, "DeliveryRequest")
    await attempts.start()
    first, second = (
        ServiceProcess(
            "scheduling",
            bootstrap=kafka_bootstrap,
            prefix=topic_prefix,
            log_path=log_path,
            settings={"RELAYSTREAM_SCHEDULING_TICK_INTERVAL_SECONDS": "0.2"},
        )
        for _ in range(2)
    )
    try:
        first.start()
        await first.wait_ready(within=60)
        released = await attempts.wait_for(3, within=20)
        assert sorted(r.key for r in released) == ["now-0", "now-1", "now-2"]
        first.kill()
        assert now_ms() < start + 30_000, "too slow to test the later messages"

        second.start()
        await second.wait_ready(within=90)
        await attempts.wait_for(len(dues), within=70)
        await asyncio.sleep(3.0)
    finally:
        first.close()
        second.terminate(within=30)
        second.close()
        await attempts.stop()

    keys = [r.key for r in attempts.records]
    assert sorted(keys) == sorted(dues), "a message was lost or released twice"
    for record in attempts.records:
        assert dues[record.key] <= record.seen_at, f"{record.key} released early"
        if record.key.startswith("later-"):
            assert record.seen_at < dues[record.key] + LATE_MS, f"{record.key} released late"
