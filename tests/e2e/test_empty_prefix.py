"""An empty `topic_prefix` (documented as allowed) works end to end: every service, the CLI and
the tests use the topics without a prefix (`accepted`, group `routing`), none `relaystream.`.

On its own broker: without a prefix the names (`log`, `queued`, group `delivery`) are the ones
any other deployment without a prefix would use, so they must not meet the shared test broker.
"""

from __future__ import annotations

import asyncio
import json
import os
import smtplib
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from delivery_sinks import refused_port
from dnsmasq import DnsServer
from harness import MAIN_SINK, POLICIES, LogWatcher, Pipeline, Sinks, has_final, types_of
from kafka_brokers import fresh_broker

SERVICE_GROUPS = {"ingest-submit", "routing", "scheduling", "delivery"}


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fresh_broker(tmp_path_factory.mktemp("kafka-empty-prefix")) as bootstrap:
        yield bootstrap


@pytest.fixture(scope="module")
async def unprefixed(
    own_broker: str, dns_server: DnsServer, sinks: Sinks, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Pipeline]:
    workdir = tmp_path_factory.mktemp("empty-prefix")
    policy = workdir / "policy.lua"
    template = (POLICIES / "pipeline.lua.template").read_text()
    policy.write_text(template.replace("{refused_port}", str(refused_port("127.0.0.4"))))
    pipeline = Pipeline(
        bootstrap=own_broker,
        prefix="",
        policy=policy,
        workdir=workdir,
        nameserver=dns_server.nameserver,
        destination_port=sinks.port,
    )
    await pipeline.start()
    try:
        yield pipeline
    finally:
        pipeline.stop()


def send(pipeline: Pipeline, recipient: str) -> None:
    with smtplib.SMTP("127.0.0.1", pipeline.smtp_port, timeout=30) as client:
        client.sendmail("sender@example.org", [recipient], "Subject: no prefix\r\n\r\nbody\r\n")


async def topics_and_groups(bootstrap: str) -> tuple[set[str], set[str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = set(await admin.list_topics())
        groups = {group for group, *_ in await admin.list_consumer_groups()}
    finally:
        await admin.close()
    return topics, groups


def relaystream_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAYSTREAM_")}
    env["RELAYSTREAM_TOPIC_PREFIX"] = ""
    return subprocess.run(
        [sys.executable, "-m", "relaystream", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_mail_flows_through_topics_without_a_prefix(
    unprefixed: Pipeline, sinks: Sinks
) -> None:
    assert unprefixed.topics.accepted.name == "accepted"
    logs = LogWatcher(unprefixed.bootstrap, unprefixed.topics.log.name)
    logs.start()
    try:
        recipient = f"bare-{uuid.uuid4().hex[:8]}@plain.test"
        await asyncio.to_thread(send, unprefixed, recipient)
        records = await logs.wait_for(has_final, recipient)
    finally:
        await logs.stop()
    assert types_of(records) == ["Reception", "Delivery"]
    assert sinks.received_by(recipient) == [MAIN_SINK]

    topics, groups = await topics_and_groups(unprefixed.bootstrap)
    assert {spec.name for spec in unprefixed.topics} <= topics
    assert not {name for name in topics if name.startswith("relaystream.")}
    assert groups >= SERVICE_GROUPS
    assert not {name for name in groups if name.startswith("relaystream.")}

    # The CLI, told the same empty prefix, reads the same topics.
    shown = relaystream_cli("logs", "--bootstrap", unprefixed.bootstrap, "--json")
    assert shown.returncode == 0, shown.stderr
    seen = [json.loads(line) for line in shown.stdout.splitlines() if line.strip()]
    assert [r["type"] for r in seen if r["recipient"] == recipient] == ["Reception", "Delivery"]
    listed = relaystream_cli("topics", "list")
    assert listed.returncode == 0, listed.stderr
    assert {line.split()[0] for line in listed.stdout.splitlines()[1:]} == {
        spec.name for spec in unprefixed.topics
    }
