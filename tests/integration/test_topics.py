"""`topics ensure` on the real broker: creates what is missing, reports drift, changes nothing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from relaystream.core.kafka.admin import (
    ExistingTopic,
    TopicDrift,
    describe_topics,
    ensure_topics,
)
from relaystream.core.kafka.topics import TopicSettings, declare_topics


async def describe_visible(bootstrap: str, names: list[str]) -> dict[str, ExistingTopic]:
    """Describe topics, waiting (bounded) for the broker's metadata to show new ones."""
    deadline = time.monotonic() + 10
    while True:
        existing: dict[str, ExistingTopic] = await describe_topics(bootstrap, names)
        if len(existing) == len(names) or time.monotonic() > deadline:
            return existing
        await asyncio.sleep(0.2)


async def test_ensure_creates_every_declared_topic_then_finds_them_matching(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    catalog = declare_topics(TopicSettings(prefix=topic_prefix, queue_partitions=3, partitions=2))
    names = [spec.name for spec in catalog]

    first = await ensure_topics(kafka_bootstrap, catalog)
    assert first.created == tuple(names)
    assert first.ok

    existing = await describe_visible(kafka_bootstrap, names)
    assert set(existing) == set(names)
    for spec in catalog:
        topic = existing[spec.name]
        assert topic.partitions == spec.partitions
        for key, value in spec.configs().items():
            assert topic.configs[key] == value, (spec.name, key)
    assert existing[catalog.queued.name].configs["cleanup.policy"] == "compact"
    assert existing[catalog.queued.name].configs["max.message.bytes"] == str(32 * 1024 * 1024)

    second = await ensure_topics(kafka_bootstrap, catalog)
    assert second.created == ()
    assert second.matching == tuple(names)
    assert second.ok


async def test_ensure_reports_a_hand_made_topic_with_wrong_settings_and_leaves_it(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    catalog = declare_topics(TopicSettings(prefix=topic_prefix, queue_partitions=3, partitions=2))
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        # queued must be compacted with 3 partitions; this one deletes and has 1.
        response = await admin.create_topics(
            [NewTopic(catalog.queued.name, 1, 1, topic_configs={"cleanup.policy": "delete"})]
        )
        assert response.to_object()["topic_errors"][0]["error_code"] == 0
    finally:
        await admin.close()

    report = await ensure_topics(kafka_bootstrap, catalog)

    assert not report.ok
    assert catalog.queued.name not in report.created
    assert len(report.created) == len(list(catalog)) - 1
    drifts = {drift.setting: drift for drift in report.drifts}
    assert drifts["cleanup.policy"] == TopicDrift(
        catalog.queued.name, "cleanup.policy", "compact", "delete"
    )
    assert drifts["partitions"] == TopicDrift(catalog.queued.name, "partitions", "3", "1")
    assert drifts["max.message.bytes"].declared == str(32 * 1024 * 1024)
    assert {drift.topic for drift in report.drifts} == {catalog.queued.name}

    unchanged = (await describe_visible(kafka_bootstrap, [catalog.queued.name]))[
        catalog.queued.name
    ]
    assert unchanged.partitions == 1
    assert unchanged.configs["cleanup.policy"] == "delete"


def test_cli_ensure_exits_non_zero_on_drift(kafka_bootstrap: str, topic_prefix: str) -> None:
    def ensure(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-c",
                "from relaystream.cli.main import main; main()",
                *("topics", "ensure", "--bootstrap", kafka_bootstrap, "--prefix", topic_prefix),
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    created = ensure("--queue-partitions", "2")
    assert created.returncode == 0, created.stderr
    assert f"created  {topic_prefix}queued" in created.stdout

    drifted = ensure("--queue-partitions", "4")
    assert drifted.returncode == 2
    for role in ("queued", "attempts", "outcomes"):
        assert f"DIFFERS  {topic_prefix}{role}: partitions is '2', declared '4'" in drifted.stdout
    assert f"ok       {topic_prefix}submit" in drifted.stdout
    assert "left unchanged" in drifted.stderr
