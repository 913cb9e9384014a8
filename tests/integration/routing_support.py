"""Helpers for the routing integration tests: accepted messages in, the topics read back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from relaystream.core.events.codec import decode, encode
from relaystream.core.events.meta import encode_meta
from relaystream.core.kafka.admin import ensure_topics
from relaystream.core.kafka.producer import EventProducer
from relaystream.core.kafka.topics import TopicCatalog, TopicSettings, TopicSpec, declare_topics

ACCEPTED_PARTITIONS = 2
QUEUE_PARTITIONS = 5
WAIT_SECONDS = 90.0


async def create_topics(bootstrap: str, prefix: str) -> TopicCatalog:
    topics = declare_topics(
        TopicSettings(
            prefix=prefix, partitions=ACCEPTED_PARTITIONS, queue_partitions=QUEUE_PARTITIONS
        )
    )
    await ensure_topics(bootstrap, topics)
    return topics


def accepted_message(
    recipient: str,
    *,
    meta: Mapping[str, Any] | None = None,
    protocol: str = "ESMTP",
    message_id: str | None = None,
    subject: str = "hello",
) -> dict[str, Any]:
    return {
        "id": message_id or uuid.uuid4().hex,
        "sender": "sender@origin.example",
        "recipient": recipient,
        "content": f"From: sender@origin.example\r\nSubject: {subject}\r\n\r\nbody\r\n".encode(),
        "meta": encode_meta({"reception_protocol": protocol, **(meta or {})}),
        "reception_protocol": protocol,
        # Millisecond precision: what the Avro timestamp keeps.
        "received_at": datetime.fromtimestamp(
            int(datetime.now(UTC).timestamp() * 1000) / 1000, UTC
        ),
        "transaction_id": None,
    }


async def produce_accepted(
    bootstrap: str, topics: TopicCatalog, messages: Iterable[dict[str, Any]]
) -> None:
    async with EventProducer(bootstrap, client_id="test-ingest") as producer:
        await asyncio.gather(
            *(
                producer.send(
                    topics.accepted.name,
                    encode("MessageAccepted", message),
                    key=message["id"],
                )
                for message in messages
            )
        )


async def produce_raw(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    async with EventProducer(bootstrap, client_id="test-ingest") as producer:
        await producer.send(topic, value, key=key)


async def produce_accepted_in_transaction(
    bootstrap: str, topics: TopicCatalog, messages: Iterable[dict[str, Any]], *, commit: bool
) -> None:
    """MessageAccepted records in one transaction, as ingest writes them; aborted unless
    `commit`. The records of an aborted transaction stay in the log, marked aborted."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id=f"test-ingest-{uuid.uuid4().hex}",
        enable_idempotence=True,
        acks="all",
    )
    await producer.start()
    try:
        await producer.begin_transaction()
        sent = [
            await producer.send(
                topics.accepted.name,
                encode("MessageAccepted", message),
                key=message["id"].encode(),
            )
            for message in messages
        ]
        await asyncio.gather(*sent)
        if commit:
            await producer.commit_transaction()
        else:
            await producer.abort_transaction()
    finally:
        await producer.stop()


@dataclass(frozen=True)
class Read:
    """One record read back: where it was, its raw bytes and its decoded event."""

    topic: str
    partition: int
    key: bytes | None
    raw: bytes
    name: str
    value: dict[str, Any]


async def read_topic(
    bootstrap: str, topic: TopicSpec, *, count: int | None = None, idle_seconds: float = 0.0
) -> list[Read]:
    """Committed records of `topic` from the beginning: at least `count` of them (waiting for
    them), or, with count None, everything up to its end offsets; then `idle_seconds` more.
    Read committed: routing writes in transactions, an aborted one must never be seen."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    found: list[Read] = []

    def add(batch: dict[TopicPartition, list[Any]]) -> None:
        for tp, records in batch.items():
            for record in records:
                name, value = decode(record.value)
                found.append(Read(tp.topic, tp.partition, record.key, record.value, name, value))

    try:
        partitions = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        # Read committed: these are the last stable offsets (no transaction open below them).
        ends = await consumer.end_offsets(partitions)
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                add(await consumer.getmany(timeout_ms=200))
                if count is not None:
                    if len(found) >= count:
                        break
                elif all([await consumer.position(tp) >= end for tp, end in ends.items()]):
                    break
        if idle_seconds:
            await asyncio.sleep(idle_seconds)
            add(await consumer.getmany(timeout_ms=500))
        return found
    finally:
        await consumer.stop()


async def end_offsets(bootstrap: str, topic: TopicSpec) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
        return {tp.partition: end for tp, end in (await consumer.end_offsets(partitions)).items()}
    finally:
        await consumer.stop()


async def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}
