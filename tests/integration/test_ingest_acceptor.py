"""The acceptor against the real broker: receptions share record batches, and a reception too
large for one batch goes in a transaction of its own; either way all of it lands or none."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from ingest_harness import ACCEPTED_MAX_BYTES, read_events, topics_with_small_accepted

from relaystream.core.kafka.topics import TopicCatalog
from relaystream.ingest import metrics
from relaystream.ingest.acceptor import AcceptanceFailed, AtomicAcceptor

pytestmark = pytest.mark.kafka

# Small, so a test reception of a few records is "too large for one batch".
BATCH_BYTES = 4096


@pytest.fixture
async def topics(kafka_bootstrap: str, topic_prefix: str) -> TopicCatalog:
    return await topics_with_small_accepted(kafka_bootstrap, topic_prefix, partitions=1)


@pytest.fixture
async def acceptor(kafka_bootstrap: str, topics: TopicCatalog) -> AsyncIterator[AtomicAcceptor]:
    started = AtomicAcceptor(
        kafka_bootstrap,
        topic=topics.accepted.name,
        transactional_id=f"test-acceptor-{uuid.uuid4().hex}",
        client_id="test-acceptor",
        ack_timeout=20.0,
        batch_bytes=BATCH_BYTES,
    )
    await started.start()
    yield started
    await started.stop()


def reception(*recipients: str, content: bytes = b"Subject: s\r\n\r\nbody\r\n") -> list[Any]:
    return [
        {
            "id": uuid.uuid4().hex,
            "sender": "s@example.com",
            "recipient": recipient,
            "content": content,
            "reception_protocol": "ESMTP",
            "received_at": datetime.now(UTC),
        }
        for recipient in recipients
    ]


def writes(kind: str, result: str = "committed") -> float:
    value: float = metrics.KAFKA_WRITES.labels(kind, result)._value.get()
    return value


async def end_offset(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        offsets: dict[TopicPartition, int] = await consumer.end_offsets([partition])
        return offsets[partition]
    finally:
        await consumer.stop()


async def test_receptions_arriving_together_share_one_batch(
    kafka_bootstrap: str, topics: TopicCatalog, acceptor: AtomicAcceptor
) -> None:
    batches, transactions = writes("batch"), writes("transaction")
    receptions = [reception(f"a{i}@example.org", f"b{i}@example.org") for i in range(10)]
    await asyncio.gather(*(acceptor.accept(events) for events in receptions))
    assert writes("batch") == batches + 1
    assert writes("transaction") == transactions
    landed = await read_events(kafka_bootstrap, topics.accepted.name, 20, schema="MessageAccepted")
    assert sorted(event["id"] for _, event in landed) == sorted(
        event["id"] for events in receptions for event in events
    )
    # No transaction markers: 20 records, 20 offsets.
    assert await end_offset(kafka_bootstrap, topics.accepted.name) == 20


async def test_a_reception_too_large_for_one_batch_commits_in_a_transaction(
    kafka_bootstrap: str, topics: TopicCatalog, acceptor: AtomicAcceptor
) -> None:
    transactions = writes("transaction")
    big = reception(*(f"r{i}@example.org" for i in range(3)), content=os.urandom(3000))
    await acceptor.accept(big)
    assert writes("transaction") == transactions + 1
    landed = await read_events(kafka_bootstrap, topics.accepted.name, 3, schema="MessageAccepted")
    assert sorted(event["id"] for _, event in landed) == sorted(event["id"] for event in big)
    # Three records and the commit marker.
    assert await end_offset(kafka_bootstrap, topics.accepted.name) == 4


@pytest.mark.parametrize("kind", ["batch", "transaction"])
async def test_a_refused_record_fails_its_whole_reception_and_the_next_ones_land(
    kafka_bootstrap: str, topics: TopicCatalog, acceptor: AtomicAcceptor, kind: str
) -> None:
    """Bob's record is over the topic's limit: alone in a batch, or in a transaction beside
    Ann's, nothing of the reception becomes visible, and the next receptions of both kinds
    land."""
    too_big = os.urandom(2 * ACCEPTED_MAX_BYTES)
    if kind == "transaction":
        failing = reception("ann@example.org", "bob@example.org")
        failing[1]["content"] = too_big
    else:
        failing = reception("bob@example.org", content=too_big)
    failures = writes(kind, "failed")
    with pytest.raises(AcceptanceFailed):
        await acceptor.accept(failing)
    assert writes(kind, "failed") == failures + 1
    small = reception("carl@example.org")
    big = reception("dan@example.org", "eve@example.org", content=os.urandom(3000))
    await asyncio.gather(acceptor.accept(small), acceptor.accept(big))
    landed = await read_events(
        kafka_bootstrap, topics.accepted.name, 3, schema="MessageAccepted", settle_seconds=2.0
    )
    assert sorted(event["recipient"] for _, event in landed) == [
        "carl@example.org",
        "dan@example.org",
        "eve@example.org",
    ]
