"""The devkit's local 3-broker KRaft cluster: replicated topics keep taking acks=all writes
when one broker is killed -9 (min.insync.replicas 2 of 3), and the broker rejoins every ISR
after its restart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from relaystream.core.kafka.admin import ensure_topics
from relaystream.core.kafka.producer import EventProducer
from relaystream.core.kafka.topics import TopicSettings, declare_topics
from relaystream_devkit.cluster import LocalKafkaCluster, topic_settings_for


async def partitions_of(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """The topic's partitions once every broker's metadata has them (just after creation a
    broker may still answer with none)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        async with asyncio.timeout(60):
            while True:
                (described,) = await admin.describe_topics([topic])
                partitions: list[dict[str, Any]] = described["partitions"]
                if described["error_code"] == 0 and partitions:
                    return partitions
                await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def replicas_and_isr(bootstrap: str, topic: str) -> list[tuple[list[int], list[int]]]:
    return [
        (sorted(p["replicas"]), sorted(p["isr"])) for p in await partitions_of(bootstrap, topic)
    ]


async def read_values(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    """The values of partition 0 up to its end once that end has reached `expected` (right after
    a leader election, the new leader's high watermark can lag the records it holds)."""
    partition = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign([partition])
        async with asyncio.timeout(60):
            while (end := (await consumer.end_offsets([partition]))[partition]) < expected:  # noqa: ASYNC110
                await asyncio.sleep(0.5)
        # An explicit offset: a seek_to_beginning racing the assignment's own reset to the
        # (default) latest offset was seen to lose.
        consumer.seek(partition, (await consumer.beginning_offsets([partition]))[partition])
        values: list[bytes] = []
        while await consumer.position(partition) < end:
            batches = await consumer.getmany(partition, timeout_ms=1000)
            values.extend(r.value for r in batches.get(partition, []) if r.value is not None)
        return values
    finally:
        await consumer.stop()


async def test_acks_all_writes_go_on_with_one_of_three_brokers_killed(tmp_path: Path) -> None:
    cluster = LocalKafkaCluster(tmp_path / "cluster", brokers=3)
    bootstrap = cluster.start(timeout_s=240)
    try:
        settings = topic_settings_for(3, TopicSettings(prefix="t.cluster.", partitions=1))
        assert (settings.replication_factor, settings.min_insync_replicas) == (3, 2)
        topic = declare_topics(settings).submit
        report = await ensure_topics(bootstrap, declare_topics(settings))
        assert report.ok, report.drifts
        assert await replicas_and_isr(bootstrap, topic.name) == [([1, 2, 3], [1, 2, 3])]

        async with EventProducer(bootstrap, client_id="cluster-test") as producer:
            await producer.send(topic.name, b"before", key=b"k")
            # The partition's leader, so the kill forces a leader election too.
            (leader,) = [p["leader"] for p in await partitions_of(bootstrap, topic.name)]
            cluster.kill_node(leader)
            assert not cluster.is_running(leader)
            # acks=all with min.insync.replicas 2: two replicas are left, so this succeeds.
            await producer.send(topic.name, b"one broker down", key=b"k")

        survivors = ",".join(n.bootstrap for n in cluster.nodes if n.node_id != leader)
        assert await read_values(survivors, topic.name, 2) == [b"before", b"one broker down"]

        cluster.start_node(leader, wait_s=180)
        await cluster.wait_in_sync(leader, within_s=180)
        assert await replicas_and_isr(bootstrap, topic.name) == [([1, 2, 3], [1, 2, 3])]
    finally:
        cluster.stop()
