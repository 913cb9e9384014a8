"""Topic declarations and the queue partitioner (pure, no broker)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relaystream.core.kafka.topics import (
    CleanupPolicy,
    TopicRole,
    TopicSettings,
    declare_topics,
    deployment_topics,
    murmur2,
    partition_for_queue,
)

# Computed with Kafka 4.1.1's org.apache.kafka.common.utils.Utils.murmur2 / toPositive on the
# UTF-8 bytes of each key: (key, murmur2, toPositive(murmur2), partition for 1, 3, 6, 12, 32).
JAVA_MURMUR2 = [
    ("", 275646681, 275646681, 0, 0, 3, 9, 25),
    ("a", -1563381124, 584102524, 0, 1, 4, 4, 28),
    ("ab", 316155434, 316155434, 0, 2, 2, 2, 10),
    ("abc", 479470107, 479470107, 0, 0, 3, 3, 27),
    ("abcd", -1323649548, 823834100, 0, 2, 2, 8, 20),
    ("example.com", 73178361, 73178361, 0, 0, 3, 9, 25),
    ("gmail.com", 685360433, 685360433, 0, 2, 5, 5, 17),
    ("campaign:tenant@example.com", 2101597066, 2101597066, 0, 1, 4, 10, 10),
    ("tenant@gmail.com", -237759984, 1909723664, 0, 2, 2, 8, 16),
    ("unspecified:example.org!smtp.relay.example.net", -252486563, 1894997085, 0, 0, 3, 9, 29),
    ("éxample.com", 243963315, 243963315, 0, 0, 3, 3, 19),
    ("xn--bcher-kva.example", -806302135, 1341181513, 0, 1, 1, 1, 9),
]


@pytest.mark.parametrize("row", JAVA_MURMUR2, ids=[row[0] or "<empty>" for row in JAVA_MURMUR2])
def test_murmur2_and_partition_match_kafka_java(row: tuple[str | int, ...]) -> None:
    key, signed, _positive, *partitions = row
    assert isinstance(key, str)
    assert murmur2(key.encode("utf-8")) == signed
    for count, expected in zip((1, 3, 6, 12, 32), partitions, strict=True):
        assert partition_for_queue(key, count) == expected


def test_partition_for_queue_matches_aiokafka_default_partitioner() -> None:
    # aiokafka's producer places keyed records with its own murmur2; they must agree, or a
    # scheduler would look for a queue's messages in the wrong partition.
    from aiokafka.partitioner import DefaultPartitioner

    for key, *_ in JAVA_MURMUR2:
        assert isinstance(key, str)
        data = key.encode("utf-8")
        all_partitions = list(range(12))
        assert DefaultPartitioner()(data, all_partitions, all_partitions) == partition_for_queue(
            key, 12
        )


@given(st.text(), st.integers(min_value=1, max_value=1000))
def test_partition_is_in_range(queue_name: str, partitions: int) -> None:
    assert 0 <= partition_for_queue(queue_name, partitions) < partitions


def test_partition_count_must_be_positive() -> None:
    with pytest.raises(ValueError):
        partition_for_queue("example.com", 0)


def test_every_role_is_declared_once_with_prefix() -> None:
    catalog = declare_topics(TopicSettings(prefix="t1."))
    names = [spec.name for spec in catalog]
    assert names == [f"t1.{role.value}" for role in TopicRole]
    assert len(set(names)) == len(TopicRole)
    assert catalog.by_role(TopicRole.DEAD_LETTER).name == "t1.dead-letter"
    assert declare_topics().queued.name == "relaystream.queued"


def test_cleanup_policies() -> None:
    catalog = declare_topics()
    compacted = {spec.role for spec in catalog if spec.cleanup_policy is CleanupPolicy.COMPACT}
    assert compacted == {
        TopicRole.QUEUED,
        TopicRole.QUEUE_CONFIG,
        TopicRole.ADMIN,
        # Keyed by ready queue name: the latest state of each, a tombstone when gone.
        TopicRole.READY_QUEUES,
        # Keyed by the dead letter's id: an operator resolves one with a tombstone.
        TopicRole.DEAD_LETTER,
    }
    for spec in catalog:
        assert spec.configs()["cleanup.policy"] == spec.cleanup_policy.value
    # One decision per message ever routed: compacted by id, and expired after the log's
    # 30 days, so the topic cannot grow without end.
    decisions = catalog.decisions.configs()
    assert decisions["cleanup.policy"] == "compact,delete"
    assert decisions["retention.ms"] == str(30 * 24 * 3600 * 1000)
    assert decisions["retention.ms"] == catalog.log.configs()["retention.ms"]


def test_content_topics_allow_large_messages() -> None:
    catalog = declare_topics()
    for spec in (catalog.submit, catalog.accepted, catalog.queued, catalog.attempts):
        assert spec.max_message_bytes >= 32 * 1024 * 1024


def test_queue_topics_are_co_partitioned_by_construction() -> None:
    catalog = declare_topics(TopicSettings(queue_partitions=7, partitions=3))
    assert {
        catalog.queued.partitions,
        catalog.attempts.partitions,
        catalog.outcomes.partitions,
    } == {7}
    # There is no field to size one of them alone.
    fields = {f.name for f in dataclasses.fields(TopicSettings)}
    assert not any(role in name for name in fields for role in ("queued", "attempts", "outcome"))


def test_production_and_local_presets() -> None:
    production = declare_topics(TopicSettings.production())
    assert {(s.replication_factor, s.configs()["min.insync.replicas"]) for s in production} == {
        (3, "2")
    }
    local = declare_topics(TopicSettings.local())
    assert {(s.replication_factor, s.configs()["min.insync.replicas"]) for s in local} == {(1, "1")}


def test_min_insync_cannot_exceed_replicas() -> None:
    with pytest.raises(ValueError):
        TopicSettings(replication_factor=1, min_insync_replicas=2)


def test_extra_configs_apply_to_one_role() -> None:
    settings = TopicSettings(extra_configs={TopicRole.QUEUED: {"segment.ms": "100"}})
    catalog = declare_topics(settings)
    assert catalog.queued.configs()["segment.ms"] == "100"
    assert "segment.ms" not in catalog.decisions.configs()


def test_an_empty_prefix_means_no_prefix_for_topics_groups_and_transactional_ids() -> None:
    topics = deployment_topics("")
    assert {spec.name for spec in topics} == {role.value for role in TopicRole}
    assert topics.group_id("routing") == "routing"
    assert topics.transactional_id("ingest", "pod-0") == "ingest-pod-0"


def test_a_prefix_scopes_topics_groups_and_transactional_ids() -> None:
    topics = deployment_topics("staging.")
    assert topics.queued.name == "staging.queued"
    assert topics.group_id("ingest-submit") == "staging.ingest-submit"
    assert topics.transactional_id("routing", "pod-1") == "staging.routing-pod-1"
