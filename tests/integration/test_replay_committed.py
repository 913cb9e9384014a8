"""Replays (audit, logs) read only committed records: an aborted transaction never shows."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from relaystream.core.kafka.admin import ensure_topics
from relaystream.core.kafka.replay import replay_topic
from relaystream.core.kafka.topics import TopicSettings, declare_topics


async def test_replay_skips_the_records_of_aborted_transactions(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topics = declare_topics(TopicSettings(prefix=topic_prefix, partitions=1))
    await ensure_topics(kafka_bootstrap, [topics.decisions])
    topic = topics.decisions.name
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=f"{topic_prefix}replay-test"
    )
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, b"committed-1", key=b"a")
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"aborted", key=b"b")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send_and_wait(topic, b"committed-2", key=b"c")
    finally:
        await producer.stop()

    values = [record.value async for record in replay_topic(kafka_bootstrap, topic)]
    assert values == [b"committed-1", b"committed-2"]
