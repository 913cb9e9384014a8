"""The bench's broker-log count against a real broker: records, markers, batches and codecs per
topic, from the segment files the broker wrote, and only what was appended since last asked."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from relaystream.core.kafka import producer as event_producer
from relaystream.core.kafka.admin import ensure_topics
from relaystream.core.kafka.producer import EventProducer
from relaystream.core.kafka.topics import TopicSettings, declare_topics
from relaystream_devkit.bench_log import BrokerLogWatch, TopicGrowth


async def broker_log_dir(bootstrap: str) -> Path:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
        node = str(cluster["brokers"][0]["node_id"])
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, node)])
        configs = {entry[0]: entry[1] for entry in response.resources[0][4]}
    finally:
        await admin.close()
    return Path(configs["log.dirs"].split(",")[0])


def of(growth: list[TopicGrowth], topic: str) -> TopicGrowth:
    [found] = [g for g in growth if g.topic == topic]
    return found


async def test_appended_records_markers_and_codecs_are_counted_per_topic(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    catalog = declare_topics(TopicSettings.local(prefix=topic_prefix))
    assert (await ensure_topics(kafka_bootstrap, catalog)).ok
    watch = BrokerLogWatch(await broker_log_dir(kafka_bootstrap), topic_prefix)
    watch.advance()  # what other tests wrote before

    # Three records in the setting's codec, sent together: one gzip batch on partition 0.
    event_producer.use_compression("gzip")
    try:
        async with EventProducer(kafka_bootstrap, client_id="log-watch") as producer:
            await asyncio.gather(
                *(producer.send(catalog.accepted.name, b"x" * 1000, partition=0) for _ in range(3))
            )
    finally:
        event_producer.use_compression("none")
    # One transaction of two uncompressed records on partition 1, one at a time (two batches):
    # one commit marker there.
    transactional = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=f"{topic_prefix}log-watch"
    )
    await transactional.start()
    try:
        async with transactional.transaction():
            for key in (b"a", b"b"):  # a compacted topic: keys needed
                await transactional.send_and_wait(
                    catalog.decisions.name, b"y" * 100, key=key, partition=1
                )
    finally:
        await transactional.stop()

    growth = await asyncio.to_thread(watch.settled, 0.5, 10.0)

    accepted = of(growth, "accepted")
    assert (accepted.records, accepted.markers, accepted.batches) == (3, 0, 1)
    assert accepted.compressed_batches == 1 and accepted.transactional_batches == 0
    assert 61 < accepted.bytes < 3000  # one header, and less than the records uncompressed
    decisions = of(growth, "decisions")
    assert (decisions.records, decisions.markers, decisions.batches) == (2, 1, 3)
    assert decisions.compressed_batches == 0 and decisions.transactional_batches == 2
    assert decisions.bytes > 200
    assert of(growth, "__transaction_state").records >= 2  # the coordinator's own records
    assert {g.topic for g in growth} <= {
        "accepted",
        "decisions",
        "__transaction_state",
        "__consumer_offsets",
    }

    # Asked again with nothing appended: nothing counted twice.
    assert [g for g in watch.advance() if g.topic in ("accepted", "decisions")] == []
