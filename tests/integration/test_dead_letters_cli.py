"""`relaystream dead-letters list/show/drop/reinject` against the real broker."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

import pytest

from relaystream.core.events.codec import encode
from relaystream.core.kafka.admin import ensure_topics
from relaystream.core.kafka.dead_letter import DeadLetters, PoisonRecord, RecordRejected
from relaystream.core.kafka.producer import Delivered, EventProducer
from relaystream.core.kafka.replay import replay_topic
from relaystream.core.kafka.topics import TopicCatalog, TopicSettings, declare_topics

pytestmark = pytest.mark.kafka


async def cli(bootstrap: str, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "relaystream", "dead-letters", *args]
    command += ["--bootstrap", bootstrap, "--prefix", prefix]
    return await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=120, check=False
    )


async def poison(
    bootstrap: str, topics: TopicCatalog, topic: str, key: bytes, value: bytes
) -> tuple[Delivered, str]:
    """Writes a poison record to `topic` and dead-letters it as a service would."""
    async with EventProducer(bootstrap, client_id="dead-letter-test") as producer:
        written = await producer.send(topic, value, key=key, partition=0)
        record = PoisonRecord(written.topic, written.partition, written.offset, key, value)
        dead_letters = DeadLetters(
            producer, topic=topics.dead_letter.name, service="scheduling", encode=encode
        )
        await dead_letters.send(record, RecordRejected("bad marker ffff", "decode"), group="t")
    return written, record.dead_letter_id


async def records_of(bootstrap: str, topic: str, key: bytes) -> list[tuple[int, bytes | None]]:
    return [
        (r.offset, r.value)
        async for r in replay_topic(bootstrap, topic)
        if r.key == key and r.partition == 0
    ]


@pytest.fixture
async def topics(kafka_bootstrap: str) -> TopicCatalog:
    catalog = declare_topics(TopicSettings(prefix=f"dl.{uuid.uuid4().hex[:8]}.", partitions=2))
    report = await ensure_topics(kafka_bootstrap, catalog)
    assert report.ok, report.drifts
    return catalog


async def test_list_and_show(kafka_bootstrap: str, topics: TopicCatalog) -> None:
    prefix = topics.submit.name.removesuffix("submit")
    _, dead_id = await poison(kafka_bootstrap, topics, topics.submit.name, b"k-1", b"\xff\x00hi")
    # The same record dead-lettered again (a redelivery) is the same dead letter.
    _, again = await poison(kafka_bootstrap, topics, topics.admin.name, b"rule-1", b"garbage")

    listed = await cli(kafka_bootstrap, prefix, "list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["ID", "SOURCE", "SERVICE", "ERROR", "REASON", "FAILED", "AT"]
    assert [row.split()[0] for row in rows] == [dead_id, again]
    assert f"{topics.submit.name} p0 @0" in rows[0] and "bad marker ffff" in rows[0]

    as_json = await cli(kafka_bootstrap, prefix, "list", "--json")
    first = json.loads(as_json.stdout.splitlines()[0])
    assert first["id"] == dead_id
    assert (first["source_topic"], first["source_partition"], first["source_offset"]) == (
        topics.submit.name,
        0,
        0,
    )
    assert (first["service"], first["error_type"], first["reason"]) == (
        "scheduling",
        "decode",
        "bad marker ffff",
    )
    assert first["failed_at"] and first["value_bytes"] == 4

    shown = await cli(kafka_bootstrap, prefix, "show", dead_id)
    assert shown.returncode == 0, shown.stderr
    assert "key (3 bytes):" in shown.stdout and "6b 2d 31" in shown.stdout
    assert "value (4 bytes):" in shown.stdout and "ff 00 68 69" in shown.stdout
    assert "..hi" in shown.stdout

    missing = await cli(kafka_bootstrap, prefix, "show", "nope/0/0")
    assert missing.returncode == 1 and "no dead letter" in missing.stderr


async def test_drop_tombstones_a_compacted_source_key_only_while_the_poison_is_its_latest(
    kafka_bootstrap: str, topics: TopicCatalog
) -> None:
    prefix = topics.admin.name.removesuffix("admin")
    admin = topics.admin.name
    _, latest_id = await poison(kafka_bootstrap, topics, admin, b"rule-a", b"garbage a")
    _, superseded_id = await poison(kafka_bootstrap, topics, admin, b"rule-b", b"garbage b")
    async with EventProducer(kafka_bootstrap, client_id="dead-letter-test") as producer:
        await producer.send(admin, b"newer b", key=b"rule-b", partition=0)

    dropped = await cli(kafka_bootstrap, prefix, "drop", latest_id)
    assert dropped.returncode == 0, dropped.stderr
    assert "tombstoned its key" in dropped.stdout
    assert (await records_of(kafka_bootstrap, admin, b"rule-a"))[-1][1] is None

    dropped = await cli(kafka_bootstrap, prefix, "drop", superseded_id)
    assert dropped.returncode == 0, dropped.stderr
    assert "tombstoned" not in dropped.stdout
    assert (await records_of(kafka_bootstrap, admin, b"rule-b"))[-1][1] == b"newer b"

    listed = await cli(kafka_bootstrap, prefix, "list", "--json")
    assert listed.stdout == ""


async def test_reinject_writes_the_record_back_to_its_source_and_resolves_it(
    kafka_bootstrap: str, topics: TopicCatalog
) -> None:
    prefix = topics.submit.name.removesuffix("submit")
    submit = topics.submit.name
    written, dead_id = await poison(kafka_bootstrap, topics, submit, b"sub-1", b"fixed later")
    reinjected = await cli(kafka_bootstrap, prefix, "reinject", dead_id)
    assert reinjected.returncode == 0, reinjected.stderr
    assert reinjected.stdout.strip() == f"re-injected {dead_id} as {submit}/0/{written.offset + 1}"
    assert await records_of(kafka_bootstrap, submit, b"sub-1") == [
        (written.offset, b"fixed later"),
        (written.offset + 1, b"fixed later"),
    ]
    listed = await cli(kafka_bootstrap, prefix, "list")
    assert listed.stdout.strip() == "no dead letters"
    again = await cli(kafka_bootstrap, prefix, "reinject", dead_id)
    assert again.returncode == 1 and "no dead letter" in again.stderr
