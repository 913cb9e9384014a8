"""Helpers for the scheduling integration tests: topics, events on them, reading them back."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from relaystream.core.events.codec import decode, encode
from relaystream.core.kafka.admin import ensure_topics
from relaystream.core.kafka.producer import EventProducer
from relaystream.core.kafka.topics import (
    TopicCatalog,
    TopicSettings,
    TopicSpec,
    declare_topics,
    partition_for_queue,
)
from relaystream.core.runtime.settings import RuntimeSettings, SchedulingSettings, Settings

PARTITIONS = 3


def catalog(prefix: str) -> TopicCatalog:
    return declare_topics(TopicSettings(prefix=prefix, queue_partitions=PARTITIONS, partitions=1))


async def create_topics(bootstrap: str, prefix: str) -> TopicCatalog:
    topics = catalog(prefix)
    await ensure_topics(bootstrap, topics)
    return topics


def settings_for(bootstrap: str, prefix: str, lease_seconds: float = 900.0) -> Settings:
    return Settings(
        runtime=replace(RuntimeSettings(), kafka_bootstrap=bootstrap, topic_prefix=prefix),
        scheduling=replace(
            SchedulingSettings(), tick_interval_seconds=0.2, in_flight_lease_seconds=lease_seconds
        ),
    )


def now_ms() -> int:
    return int(time.time() * 1000)


def at(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, UTC)


async def queue_message(
    producer: EventProducer,
    topics: TopicCatalog,
    message_id: str,
    *,
    queue: str = "example.com",
    due_at: int,
    created_at: int | None = None,
    attempts: int = 0,
) -> None:
    record = {
        "id": message_id,
        "queue": queue,
        "sender": "sender@origin.example",
        "recipient": f"{message_id}@{queue.rsplit('@', 1)[-1]}",
        "content": f"Subject: {message_id}\r\n\r\nbody\r\n".encode(),
        "meta": {"tenant": json.dumps("acme")},
        "created_at": at(created_at if created_at is not None else now_ms()),
        "due_at": at(due_at),
        "attempts": attempts,
        "last_response": None,
    }
    await producer.send(
        topics.queued.name,
        encode("QueuedMessage", record),
        key=message_id,
        partition=partition_for_queue(queue, PARTITIONS),
    )


async def send_outcome(
    producer: EventProducer,
    topics: TopicCatalog,
    message_id: str,
    attempt: int,
    kind: str,
    *,
    queue: str = "example.com",
) -> None:
    code = {"DELIVERED": 250, "TRANSIENT_FAILURE": 451, "BOUNCE": 550}[kind]
    outcome = {
        "id": message_id,
        "queue": queue,
        "attempt": attempt,
        "kind": kind,
        "response": {"code": code, "enhanced_code": None, "content": "test", "command": None},
        "site": "test-site",
        "peer_name": None,
        "peer_address": None,
        "egress_pool": None,
        "egress_source": None,
        "completed_at": at(now_ms()),
    }
    await producer.send(
        topics.outcomes.name,
        encode("DeliveryOutcome", outcome),
        key=message_id,
        partition=partition_for_queue(queue, PARTITIONS),
    )


async def set_override(
    producer: EventProducer, topics: TopicCatalog, target: str, config: dict[str, Any]
) -> None:
    override = {
        "target": target,
        "config": json.dumps(config),
        "updated_at": at(now_ms()),
        "updated_by": "test",
        "reason": None,
    }
    await producer.send(
        topics.queue_config.name, encode("QueueConfigOverride", override), key=target
    )


@dataclass
class Seen:
    """One record read back, with the wall-clock time the test saw it."""

    seen_at: int
    key: str
    value: dict[str, Any] | None
    partition: int


class TopicWatcher:
    """Reads a topic from the beginning in the background and collects its records."""

    def __init__(self, bootstrap: str, spec: TopicSpec, event: str | None) -> None:
        self._topic = spec.name
        self._partitions = spec.partitions
        self._event = event
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=50,
        )  # fmt: skip
        self.records: list[Seen] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        tps = [TopicPartition(self._topic, p) for p in range(self._partitions)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=100)
            for records in batch.values():
                for record in records:
                    value = None
                    if record.value is not None:
                        _, value = decode(record.value, self._event)
                    self.records.append(
                        Seen(now_ms(), record.key.decode(), value, record.partition)
                    )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self._consumer.stop()

    async def wait_for(self, count: int, within: float, key: str | None = None) -> list[Seen]:
        deadline = time.monotonic() + within
        while True:
            matching = [r for r in self.records if key is None or r.key == key]
            if len(matching) >= count or time.monotonic() > deadline:
                return matching
            await asyncio.sleep(0.05)
