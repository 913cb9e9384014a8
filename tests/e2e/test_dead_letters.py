"""Garbage on every topic a service consumes is dead-lettered, and nothing stops (issue 16/2).

A dedicated pipeline (the four services as processes). Each consumed topic gets random bytes,
truncated Avro, valid Avro with a string that is no UTF-8, and a copy of a realistic record
with its last byte flipped (plus, where it applies, a record that decodes but does not
validate). Every one must reach the dead-letter topic with its source topic, partition and
offset and a reason; every service stays ready; good mail sent afterwards is delivered.
Before the fix a corrupt `queued` record already due crash-looped scheduling.
"""

from __future__ import annotations

import asyncio
import random
import smtplib
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from dnsmasq import DnsServer
from harness import MAIN_SINK, LogWatcher, Pipeline, Sinks, dedicated_pipeline, has_final

from relaystream.core.events.codec import DecodeError, decode, encode
from relaystream.core.events.examples import example_records
from relaystream.core.kafka.dead_letter import dead_letter_id
from relaystream.core.kafka.dead_letter_store import StoredDeadLetter, list_dead_letters
from relaystream.core.kafka.producer import EventProducer
from relaystream.core.kafka.topics import TopicRole

pytestmark = [pytest.mark.kafka, pytest.mark.dns]

# Every consumed topic, the event it carries, and a string field to corrupt.
CONSUMED = {
    TopicRole.SUBMIT: ("MessageSubmitted", "sender"),
    TopicRole.ACCEPTED: ("MessageAccepted", "sender"),
    TopicRole.QUEUED: ("QueuedMessage", "sender"),
    TopicRole.ATTEMPTS: ("DeliveryRequest", "sender"),
    TopicRole.OUTCOMES: ("DeliveryOutcome", "site"),
    TopicRole.QUEUE_CONFIG: ("QueueConfigOverride", "updated_by"),
    TopicRole.ADMIN: ("AdminCommand", "reason"),
}
MARKER = "zzCORRUPTzz"


@pytest.fixture(scope="module")
async def poisoned_pipeline(
    kafka_bootstrap: str,
    dns_server: DnsServer,
    sinks: Sinks,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Pipeline, LogWatcher]]:
    async with dedicated_pipeline(
        kafka_bootstrap, dns_server, sinks, tmp_path_factory.mktemp("poison")
    ) as running:
        yield running


def realistic(schema: str, unique: str) -> dict[str, Any]:
    """An example record of `schema` with an id (key) of its own; a QueuedMessage is due."""
    record = example_records(2_000)[schema]
    if schema == "QueuedMessage":
        record.update(id=unique, queue=f"{unique}@poison.test", last_response=None)
    elif schema in {"MessageAccepted", "DeliveryRequest", "DeliveryOutcome", "AdminCommand"}:
        record["id"] = unique
    elif schema == "QueueConfigOverride":
        record["target"] = unique
    return record


def key_of(schema: str, record: dict[str, Any]) -> bytes:
    if schema == "QueueConfigOverride":
        return str(record["target"]).encode()
    if schema == "MessageSubmitted":
        return str(record["submission_id"]).encode()
    return str(record["id"]).encode()


def garbage(schema: str, field: str, rng: random.Random) -> list[tuple[str, bytes, bytes]]:
    """(kind, key, value) of each kind of garbage for one topic."""
    found = []
    for kind in ("random", "truncated", "corrupt-string", "flipped"):
        record = realistic(schema, f"{kind}-{uuid.uuid4().hex[:8]}")
        key = key_of(schema, record)
        if kind == "random":
            value = rng.randbytes(rng.randint(1, 200))
        elif kind == "truncated":
            valid = encode(schema, record)
            value = valid[: len(valid) // 2]
        elif kind == "corrupt-string":
            record[field] = MARKER
            value = encode(schema, record).replace(MARKER.encode(), b"zz\xffORRUPTzz")
        else:
            value = bytearray(encode(schema, record))
            value[-1] = 0xFF
            value = bytes(value)
        found.append((kind, key, value))
    if schema == "QueueConfigOverride":
        record = realistic(schema, f"invalid-{uuid.uuid4().hex[:8]}")
        record["config"] = '{"no_such_field": 1}'
        found.append(("invalid", key_of(schema, record), encode(schema, record)))
    if schema == "QueuedMessage":
        record = realistic(schema, f"misfiled-{uuid.uuid4().hex[:8]}")
        found.append(("key-not-id", b"another-key", encode(schema, record)))
    return found


def refused(schema: str, value: bytes) -> bool:
    try:
        decode(value, schema)
    except DecodeError:
        return True
    return False


async def wait_for_dead_letters(
    pipeline: Pipeline, ids: set[str], within: float = 120.0
) -> dict[str, StoredDeadLetter]:
    deadline = time.monotonic() + within
    while True:
        found = {
            d.id: d
            for d in await list_dead_letters(pipeline.bootstrap, pipeline.topics.dead_letter.name)
        }
        if ids <= set(found) or time.monotonic() > deadline:
            assert ids <= set(found), f"not dead-lettered: {sorted(ids - set(found))}"
            return found
        await asyncio.sleep(1.0)


async def all_ready(pipeline: Pipeline) -> dict[str, int]:
    statuses = {}
    async with aiohttp.ClientSession() as http:
        for name, port in pipeline.health_ports.items():
            assert pipeline.processes[name].poll() is None, (
                f"{name} exited:\n{pipeline.log_tail(name)}"
            )
            async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                statuses[name] = response.status
    return statuses


def send_mail(pipeline: Pipeline, recipient: str) -> None:
    with smtplib.SMTP("127.0.0.1", pipeline.smtp_port, timeout=60) as client:
        client.sendmail("sender@example.org", [recipient], f"Subject: {recipient}\r\n\r\nx\r\n")


async def assert_good_mail_delivered(pipeline: Pipeline, logs: LogWatcher, sinks: Sinks) -> None:
    recipient = f"after-{uuid.uuid4().hex[:8]}@plain.test"
    await asyncio.to_thread(send_mail, pipeline, recipient)
    records = await logs.wait_for(has_final, recipient, within=90)
    assert records[-1]["type"] == "Delivery", records
    assert MAIN_SINK in sinks.received_by(recipient)


async def produce_garbage(pipeline: Pipeline) -> dict[str, tuple[TopicRole, str]]:
    """Writes every kind of garbage to every consumed topic; returns {dead letter id: what}."""
    rng = random.Random(16)
    expected: dict[str, tuple[TopicRole, str]] = {}
    async with EventProducer(pipeline.bootstrap, client_id="poison-test") as producer:
        for role, (schema, field) in CONSUMED.items():
            topic = pipeline.topics.by_role(role)
            for kind, key, value in garbage(schema, field, rng):
                if kind not in {"invalid", "key-not-id"}:
                    assert refused(schema, value), (role, kind)
                # One scheduling and one delivery instance own every partition.
                written = await producer.send(topic.name, value, key=key, partition=0)
                expected[dead_letter_id(written.topic, written.partition, written.offset)] = (
                    role,
                    kind,
                )
    return expected


async def test_garbage_on_every_consumed_topic_is_dead_lettered_and_nothing_stops(
    poisoned_pipeline: tuple[Pipeline, LogWatcher], sinks: Sinks
) -> None:
    pipeline, logs = poisoned_pipeline
    expected = await produce_garbage(pipeline)

    found = await wait_for_dead_letters(pipeline, set(expected))
    for dead_id, (role, kind) in expected.items():
        dead = found[dead_id]
        topic, partition, offset = dead_id.rsplit("/", 2)
        assert (dead.source_topic, dead.source_partition, dead.source_offset) == (
            topic,
            int(partition),
            int(offset),
        ), (role, kind)
        assert dead.reason, (role, kind)
        assert dead.value is not None
    # The corrupt `queued` records were due at once: scheduling survived their release.
    await asyncio.sleep(3 * 0.2 + 2)
    assert await all_ready(pipeline) == dict.fromkeys(pipeline.health_ports, 200)
    await assert_good_mail_delivered(pipeline, logs, sinks)


async def test_restarted_scheduling_stays_up_and_a_dropped_poison_record_stays_dropped(
    poisoned_pipeline: tuple[Pipeline, LogWatcher], sinks: Sinks
) -> None:
    """Compacted topics are re-read on every start: poison there is met again. The dead letter
    is the same one (same id), and one dropped by the operator does not come back."""
    pipeline, logs = poisoned_pipeline
    dead_letters = pipeline.topics.dead_letter.name
    before = {d.id: d for d in await list_dead_letters(pipeline.bootstrap, dead_letters)}
    compacted = {pipeline.topics.queued.name, pipeline.topics.admin.name}
    dropped = sorted(d for d, dead in before.items() if dead.source_topic in compacted)[:2]
    assert len(dropped) == 2
    for dead_id in dropped:
        command = [sys.executable, "-m", "relaystream", "dead-letters", "drop", dead_id]
        command += ["--bootstrap", pipeline.bootstrap, "--prefix", pipeline.prefix]
        result = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, timeout=120, check=False
        )
        assert result.returncode == 0, result.stderr
        assert f"dropped {dead_id}" in result.stdout

    for _ in range(2):
        pipeline.kill("scheduling")
        await pipeline.restart("scheduling")
        # Ready means rebuilt and the control topics loaded: their dead letters are written.
        after = {
            d.id
            for d in await list_dead_letters(pipeline.bootstrap, pipeline.topics.dead_letter.name)
        }
        assert after == set(before) - set(dropped)
        await asyncio.sleep(2)
        assert await all_ready(pipeline) == dict.fromkeys(pipeline.health_ports, 200)
    await assert_good_mail_delivered(pipeline, logs, sinks)


async def indexed(pipeline: Pipeline, message_id: str) -> bool:
    url = f"http://127.0.0.1:{pipeline.admin_port}/api/admin/inspect-message/v1"
    async with aiohttp.ClientSession() as http, http.get(url, params={"id": message_id}) as r:
        assert r.status in {200, 404}, await r.text()
        return r.status == 200


async def eventually(pipeline: Pipeline, message_id: str, expected: bool) -> None:
    deadline = time.monotonic() + 30
    while await indexed(pipeline, message_id) != expected:
        assert time.monotonic() < deadline, f"{message_id} indexed: expected {expected}"
        await asyncio.sleep(0.3)


async def test_the_spool_index_is_keyed_by_what_a_tombstone_reaches(
    poisoned_pipeline: tuple[Pipeline, LogWatcher],
) -> None:
    """A poison record replaces its key's message and never enters the index; a record whose
    key is not its message id (once indexed under the id, out of a tombstone's reach) is
    refused; a tombstone on a key removes what the index holds under it."""
    pipeline, _ = poisoned_pipeline
    queued = pipeline.topics.queued.name
    message_id = f"waiting-{uuid.uuid4().hex[:8]}"
    record = realistic("QueuedMessage", message_id)
    record["due_at"] = record["created_at"].replace(year=2999)  # waits: stays in the index
    valid = encode("QueuedMessage", record)
    poison = bytearray(valid)
    poison[-1] = 0xFF
    async with EventProducer(pipeline.bootstrap, client_id="poison-test") as producer:
        await producer.send(queued, valid, key=message_id, partition=1)
        await eventually(pipeline, message_id, True)
        await producer.send(queued, bytes(poison), key=message_id, partition=1)
        await eventually(pipeline, message_id, False)
        await producer.send(queued, valid, key=message_id, partition=1)
        await eventually(pipeline, message_id, True)
        await producer.send(queued, None, key=message_id, partition=1)
        await eventually(pipeline, message_id, False)

        misfiled = realistic("QueuedMessage", f"misfiled-{uuid.uuid4().hex[:8]}")
        misfiled["due_at"] = record["due_at"]
        written = await producer.send(
            queued, encode("QueuedMessage", misfiled), key=b"not-its-id", partition=1
        )
    dead_id = dead_letter_id(written.topic, written.partition, written.offset)
    found = await wait_for_dead_letters(pipeline, {dead_id})
    assert "not its message id" in found[dead_id].reason
    assert not await indexed(pipeline, str(misfiled["id"]))
