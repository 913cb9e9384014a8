"""The local broker from the devkit: lifecycle, CLI, setup errors, and real log compaction."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from relaystream_devkit.broker import (
    BrokerAlreadyRunning,
    BrokerError,
    LocalKafka,
    free_loopback_ports,
)


def run_cli(state_dir: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RELAYSTREAM_STATE_DIR": str(state_dir)}
    return subprocess.run(
        [sys.executable, "-c", "from relaystream.cli.main import main; main()", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes | None]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()


async def read_all(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """Every record of partition 0 from the beginning up to its current end."""
    partition = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign([partition])
        end = (await consumer.end_offsets([partition]))[partition]
        await consumer.seek_to_beginning(partition)
        records: list[tuple[bytes | None, bytes | None]] = []
        while await consumer.position(partition) < end:
            batches = await consumer.getmany(partition, timeout_ms=1000)
            records.extend((r.key, r.value) for r in batches.get(partition, []))
        return records
    finally:
        await consumer.stop()


def test_start_status_second_start_stop_restart(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    port, controller_port = free_loopback_ports(2)
    ports = ["--port", str(port), "--controller-port", str(controller_port), "--timeout", "180"]

    started = run_cli(state_dir, "kafka", "start", *ports)
    assert started.returncode == 0, started.stderr
    assert f"Kafka is running at 127.0.0.1:{port}" in started.stdout
    broker = LocalKafka(state_dir=state_dir)
    try:
        assert broker.is_running()
        assert broker.log_path.is_file()
        assert "Kafka Server started" in broker.log_path.read_text()

        status = run_cli(state_dir, "kafka", "status")
        assert status.returncode == 0
        assert f"running: pid {broker.status().pid}, bootstrap 127.0.0.1:{port}" in status.stdout
        assert str(broker.log_path) in status.stdout

        again = run_cli(state_dir, "kafka", "start", *ports)
        assert again.returncode == 0
        assert "already running" in again.stdout
        with pytest.raises(BrokerAlreadyRunning):
            broker.start(port=port, controller_port=controller_port)

        # A topic written before a restart is still there after it: the data dir is kept.
        bootstrap = f"127.0.0.1:{port}"
        asyncio.run(create_topic(bootstrap, "kept", {}))
        asyncio.run(produce(bootstrap, "kept", [(b"k", b"v")]))

        stopped = run_cli(state_dir, "kafka", "stop")
        assert stopped.returncode == 0
        assert "stopped cleanly" in stopped.stdout
        assert not broker.is_running()
        assert run_cli(state_dir, "kafka", "status").stdout.startswith("stopped")
        assert "not running" in run_cli(state_dir, "kafka", "stop").stdout

        restarted = broker.start(port=port, controller_port=controller_port, timeout_s=180)
        assert restarted == bootstrap
        assert asyncio.run(read_all(bootstrap, "kept")) == [(b"k", b"v")]
    finally:
        broker.stop()
    assert not broker.is_running()


def test_missing_java_is_named_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no java, no mvn
    with pytest.raises(BrokerError, match="java not found: apt-get install openjdk-17-jre"):
        LocalKafka(state_dir=tmp_path / "state").start(*free_loopback_ports(2))


def test_missing_maven_is_named_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAFKA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    broker = LocalKafka(state_dir=tmp_path / "state", cache_dir=tmp_path / "empty-cache")
    with pytest.raises(BrokerError, match="mvn not found: apt-get install maven"):
        broker.ensure_jars()


def test_maven_failure_shows_its_output_and_names_maven_central(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAFKA_HOME", raising=False)
    # Offline with an empty local repository: Maven fails as it does without a network.
    monkeypatch.setenv("RELAYSTREAM_MAVEN_ARGS", f"-o -Dmaven.repo.local={tmp_path / 'm2'}")
    broker = LocalKafka(state_dir=tmp_path / "state", cache_dir=tmp_path / "empty-cache")
    with pytest.raises(BrokerError, match="Maven Central must be reachable") as failure:
        broker.ensure_jars()
    assert "[ERROR]" in str(failure.value)  # the tail of Maven's own output
    assert not broker.libs_dir.exists()


async def create_topic(bootstrap: str, name: str, configs: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(name, 1, 1, topic_configs=configs)])
        assert response.to_object()["topic_errors"][0]["error_code"] == 0, response
    finally:
        await admin.close()


async def test_compacted_topic_keeps_latest_value_and_drops_tombstones(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}compacted"
    # Per-topic knobs that make the cleaner act within seconds (the broker's cleaner backoff
    # is already short): tiny segments by time, any dirt is enough, tombstones expire at once.
    await create_topic(
        kafka_bootstrap,
        topic,
        {
            "cleanup.policy": "compact",
            "segment.ms": "100",
            "min.cleanable.dirty.ratio": "0.01",
            "delete.retention.ms": "0",
            "min.compaction.lag.ms": "0",
        },
    )
    await produce(kafka_bootstrap, topic, [(b"k", b"v1"), (b"gone", b"x")])
    await asyncio.sleep(0.2)
    await produce(kafka_bootstrap, topic, [(b"k", b"v2"), (b"gone", None)])
    # No check of the uncompacted log here: the cleaner may already have run (segment.ms is
    # tiny). Without compaction, k=v1 and both "gone" records stay, and the loop below fails.

    deadline = time.monotonic() + 40
    records: list[tuple[bytes | None, bytes | None]] = []
    filler = 0
    while time.monotonic() < deadline:
        # Each append after segment.ms rolls the segment, so what came before becomes cleanable.
        filler += 1
        await produce(kafka_bootstrap, topic, [(b"filler", str(filler).encode())])
        records = await read_all(kafka_bootstrap, topic)
        keys = [key for key, _ in records]
        if b"gone" not in keys and keys.count(b"k") == 1:
            break
        await asyncio.sleep(0.5)
    values_of_k = [value for key, value in records if key == b"k"]
    assert values_of_k == [b"v2"], records
    assert all(key != b"gone" for key, _ in records), records


def test_kafka_home_libs_are_used_without_maven(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetched = LocalKafka(state_dir=tmp_path / "state").ensure_jars()
    monkeypatch.setenv("PATH", str(tmp_path))  # no mvn: it must not be needed
    from_home = LocalKafka(state_dir=tmp_path / "state", kafka_home=fetched.parent)
    assert from_home.ensure_jars() == fetched

    empty_home = LocalKafka(state_dir=tmp_path / "state", kafka_home=tmp_path / "no-kafka")
    with pytest.raises(BrokerError, match=r"has no libs/kafka_2\.13-"):
        empty_home.ensure_jars()
