"""Replays (audit, logs) read only committed records: an aborted transaction never shows."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer

from relaystream.core.kafka.admin import ensure_topics
from relaystream.core.kafka.replay import ReplayProgress, replay_topic, replay_topic_batches
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


async def test_replay_of_some_partitions_stops_at_their_end_offsets(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """The spool rebuild's read: given partitions only, CRCs checked, each partition's end
    offset reported; records written after the start are not read."""
    topics = declare_topics(TopicSettings(prefix=topic_prefix, partitions=3))
    await ensure_topics(kafka_bootstrap, [topics.decisions])
    topic = topics.decisions.name
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for n in range(30):
            await producer.send(topic, b"%d" % n, key=b"k%d" % n, partition=n % 3)
        await producer.flush()
        progress = ReplayProgress()
        read: list[tuple[int, bytes | None]] = []
        async for batch in replay_topic_batches(
            kafka_bootstrap, topic, partitions=[1, 2], progress=progress, check_crcs=True
        ):
            read += [(batch.partition, record.value) for record in batch.records]
            await producer.send_and_wait(topic, b"late", key=b"late", partition=1)
    finally:
        await producer.stop()
    assert sorted(read) == sorted((n % 3, b"%d" % n) for n in range(30) if n % 3)
    assert progress.end_offsets == {1: 10, 2: 10}
    assert (progress.read, progress.total) == (20, 20)


async def test_a_followed_replay_stops_when_its_reader_does(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """The next fetch is always under way while following: closing the replay drops it."""
    topics = declare_topics(TopicSettings(prefix=topic_prefix, partitions=1))
    await ensure_topics(kafka_bootstrap, [topics.decisions])
    topic = topics.decisions.name
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"first", key=b"a")
    finally:
        await producer.stop()
    replay = replay_topic_batches(kafka_bootstrap, topic, follow=True)
    batch = await asyncio.wait_for(anext(replay), timeout=30)
    assert [record.value for record in batch.records] == [b"first"]
    await asyncio.wait_for(replay.aclose(), timeout=10)
