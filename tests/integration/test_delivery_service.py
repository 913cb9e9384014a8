"""The delivery service through a real broker: attempts in, SMTP out, outcomes and logs back."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from delivery_sinks import SmtpSink, start_sink
from kumo_log_shape import assert_kumo_shape

from relaystream.cli.main import main
from relaystream.core.events.codec import decode, encode
from relaystream.core.kafka.admin import ensure_topics
from relaystream.core.kafka.producer import EventProducer
from relaystream.core.kafka.topics import (
    TopicCatalog,
    TopicSettings,
    declare_topics,
    partition_for_queue,
)
from relaystream.core.runtime.service import EXIT_OK, ServiceRuntime, run_service
from relaystream.core.runtime.settings import (
    DeliverySettings,
    HostPort,
    RuntimeSettings,
    Settings,
)
from relaystream.delivery.service import SERVICE

WAIT_SECONDS = 60.0
PARTITIONS = 3


async def read_all(bootstrap: str, topic: str, count: int) -> list[Any]:
    """The first `count` records of `topic` (all partitions), waiting for them to arrive."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    found: list[Any] = []
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            while len(found) < count:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    found.extend(records)
    finally:
        await consumer.stop()
    return found


async def committed_offsets(bootstrap: str, group: str) -> dict[Any, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in offsets.items()}


def delivery_request(message_id: str, queue: str, recipient: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "id": message_id,
        "queue": queue,
        "attempt": 1,
        "sender": "sender@example.com",
        "recipient": recipient,
        "content": b"Subject: via kafka\r\n\r\nhello\r\n",
        "meta": {"reception_protocol": '"HTTP"', "tenant": '"acme"'},
        "created_at": now,
        "queue_config": json.dumps({}),
        "released_at": now,
    }


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    server = await start_sink(rcpt_replies={"nobody@example.com": "550 5.1.1 no such user"})
    yield server
    await server.close()


@pytest.fixture
async def topics(kafka_bootstrap: str, topic_prefix: str) -> TopicCatalog:
    catalog = declare_topics(
        TopicSettings(prefix=topic_prefix, queue_partitions=PARTITIONS, partitions=1)
    )
    await ensure_topics(kafka_bootstrap, catalog)
    return catalog


NODE_ID = "557f3ad4-2c8c-11ee-976e-782d7e12e173"


def run_logs_json(capsys: pytest.CaptureFixture[str], bootstrap: str, prefix: str) -> list[str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["logs", "--bootstrap", bootstrap, "--prefix", prefix, "--json"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out.splitlines()


async def test_requests_on_attempts_become_mail_outcomes_and_logs(
    kafka_bootstrap: str,
    topic_prefix: str,
    topics: TopicCatalog,
    sink: SmtpSink,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # An operator's rules file (KumoMTA's format) goes before the built-in rules.
    rules = tmp_path / "mine.toml"
    rules.write_text('[rules]\nNoSuchUserHere = ["no such user"]\n')
    settings = Settings(
        runtime=RuntimeSettings(
            kafka_bootstrap=kafka_bootstrap,
            topic_prefix=topic_prefix,
            http_bind=HostPort("127.0.0.1", 0),
            node_id=NODE_ID,
            bounce_classifier_files=(rules,),
        ),
        delivery=DeliverySettings(
            allow_loopback=True,
            ehlo_name="relay.test",
            command_timeout_seconds=10.0,
            # Outlasts the test: the pooled connection stays open until the shutdown closes it.
            idle_timeout_seconds=300.0,
        ),
    )
    queue = f"acme@[127.0.0.1]:{sink.port}"
    requests = {
        "a" * 32: delivery_request("a" * 32, queue, "rcpt@example.com"),
        "b" * 32: delivery_request("b" * 32, queue, "nobody@example.com"),
    }
    runtimes: list[ServiceRuntime] = []
    service = asyncio.create_task(
        run_service(SERVICE, settings, handle_signals=False, runtime_ready=runtimes.append)
    )
    async with EventProducer(kafka_bootstrap, client_id="test") as producer:
        for message_id, request in requests.items():
            await producer.send(
                topics.attempts.name,
                encode("DeliveryRequest", request),
                key=message_id,
                partition=partition_for_queue(queue, PARTITIONS),
            )
        # Not an event at all: dead-lettered, and the service goes on.
        await producer.send(topics.attempts.name, b"not avro", key="junk")

    outcomes = await read_all(kafka_bootstrap, topics.outcomes.name, 2)
    logs = await read_all(kafka_bootstrap, topics.log.name, 2)
    dead = await read_all(kafka_bootstrap, topics.dead_letter.name, 1)
    # Both requests may have been sent at once, over one connection each; they stay pooled.
    assert sink.stats.connections_active >= 1
    runtimes[0].request_shutdown("test over")
    assert await asyncio.wait_for(service, WAIT_SECONDS) == EXIT_OK

    by_id = {record.key.decode(): record for record in outcomes}
    assert set(by_id) == set(requests)
    for record in outcomes:
        assert record.partition == partition_for_queue(queue, PARTITIONS)
    delivered = decode(by_id["a" * 32].value, "DeliveryOutcome")[1]
    bounced = decode(by_id["b" * 32].value, "DeliveryOutcome")[1]
    assert delivered["kind"] == "DELIVERED" and delivered["attempt"] == 1
    assert delivered["site"] == f"127.0.0.1:{sink.port}"
    assert delivered["peer_address"] == "127.0.0.1"
    assert (delivered["egress_pool"], delivered["egress_source"]) == ("unspecified",) * 2
    assert bounced["kind"] == "BOUNCE"
    assert bounced["response"]["code"] == 550

    log_types = {
        record.key.decode(): decode(record.value, "LogRecord")[1]["type"] for record in logs
    }
    assert log_types == {"a" * 32: "Delivery", "b" * 32: "Bounce"}
    delivery_log = next(decode(r.value, "LogRecord")[1] for r in logs if r.key.decode() == "a" * 32)
    assert delivery_log["peer_address"] == {"name": "127.0.0.1", "addr": "127.0.0.1"}
    assert delivery_log["delivery_protocol"] == "ESMTP"
    assert delivery_log["reception_protocol"] == "HTTP"
    assert delivery_log["recipients"] == ["rcpt@example.com"]

    # `relaystream logs --json` shows these real records exactly in KumoMTA's shape.
    printed = await asyncio.to_thread(run_logs_json, capsys, kafka_bootstrap, topic_prefix)
    shown = {record["id"]: record for record in map(json.loads, printed)}
    for record in shown.values():
        assert_kumo_shape(record)
        assert record["nodeid"] == NODE_ID
        assert record["meta"] == {"reception_protocol": "HTTP", "tenant": "acme"}
        assert record["source_address"]["address"].startswith("127.0.0.1:")
        uuid.UUID(record["session_id"])
    assert shown["a" * 32]["bounce_classification"] == "Uncategorized"
    assert shown["b" * 32]["bounce_classification"] == "NoSuchUserHere"

    assert decode(dead[0].value, "DeadLetter")[1]["service"] == "delivery"
    [message] = sink.messages
    assert message.recipients == ["rcpt@example.com"]
    assert b"via kafka" in message.content
    # Graceful shutdown closed the pooled connection and committed every finished offset.
    await sink.wait_for_active_connections(0)
    assert sum((await committed_offsets(kafka_bootstrap, f"{topic_prefix}delivery")).values()) == 3
