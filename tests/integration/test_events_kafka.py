"""Every event survives a trip through a real Kafka topic, encoded and decoded by the codec."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from relaystream.core.events import decode, encode, schema_names
from relaystream.core.events.examples import example_records


async def test_every_event_round_trips_through_a_real_topic(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}events"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()

    examples = example_records(content_size=10_000)
    assert sorted(examples) == schema_names()
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap,
        acks="all",
        enable_idempotence=True,
        max_request_size=2_000_000,
    )
    await producer.start()
    try:
        for name, record in examples.items():
            await producer.send_and_wait(topic, encode(name, record), key=name.encode())
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    received: dict[str, dict[str, object]] = {}
    try:
        async with asyncio.timeout(30):
            while len(received) < len(examples):
                message = await consumer.getone()
                assert message.value is not None
                name, record = decode(message.value, expected=message.key.decode())
                received[name] = record
    finally:
        await consumer.stop()

    assert received == examples
