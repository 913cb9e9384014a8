"""The KafkaTopic resources in every overlay equal the code's topic declaration."""

from __future__ import annotations

from typing import Any

import pytest

from relaystream.core.kafka.topics import TopicCatalog, TopicSettings, declare_topics

from . import kafka_topics
from .manifests import (
    OVERLAYS,
    Resource,
    config_map_by_prefix,
    of_kind,
    render_overlay,
    topic_prefix,
)

# Which TopicSettings preset each overlay deploys.
PRESETS = {
    "dev": TopicSettings.local,
    "prod": TopicSettings.production,
    "strimzi": TopicSettings.production,
}


def as_declared(topic: Resource) -> tuple[str, int, int, dict[str, str]]:
    spec = topic["spec"]
    return (
        spec["topicName"],
        spec["partitions"],
        spec["replicas"],
        {key: str(value) for key, value in spec["config"].items()},
    )


def declared(catalog: TopicCatalog) -> set[tuple[str, int, int, tuple[tuple[str, str], ...]]]:
    return {
        (spec.name, spec.partitions, spec.replication_factor, tuple(sorted(spec.configs().items())))
        for spec in catalog
    }


def rendered(topics: list[Resource]) -> set[tuple[str, int, int, tuple[tuple[str, str], ...]]]:
    result = set()
    for topic in topics:
        name, partitions, replicas, config = as_declared(topic)
        result.add((name, partitions, replicas, tuple(sorted(config.items()))))
    return result


def test_generated_manifests_are_current() -> None:
    for path, text in kafka_topics.generated_files().items():
        assert path.read_text(encoding="utf-8") == text, (
            f"{path} is stale: run `python -m tests.deploy.kafka_topics --write`"
        )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_topics_equal_the_declaration(overlay: str) -> None:
    resources = render_overlay(overlay)
    prefix = topic_prefix(resources)
    expected = declare_topics(PRESETS[overlay](prefix=prefix))
    topics = of_kind(resources, "KafkaTopic")
    assert len(topics) == len(list(expected))
    assert rendered(topics) == declared(expected)
    for topic in topics:
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == kafka_topics.STRIMZI_CLUSTER


def test_the_comparison_catches_a_difference() -> None:
    # The equality above can fail: one partition more on one topic is a difference.
    resources = render_overlay("prod")
    topics: list[dict[str, Any]] = [
        dict(t, spec=dict(t["spec"])) for t in of_kind(resources, "KafkaTopic")
    ]
    topics[0]["spec"]["partitions"] += 1
    prefix = topic_prefix(resources)
    assert rendered(topics) != declared(declare_topics(TopicSettings.production(prefix=prefix)))


def test_co_partitioned_topics_share_one_count() -> None:
    for overlay in OVERLAYS:
        counts = {
            t["spec"]["topicName"].rpartition(".")[2]: t["spec"]["partitions"]
            for t in of_kind(render_overlay(overlay), "KafkaTopic")
        }
        assert counts["queued"] == counts["attempts"] == counts["outcomes"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_bootstrap_names_the_strimzi_cluster(overlay: str) -> None:
    resources = render_overlay(overlay)
    env = config_map_by_prefix(resources, "relaystream-env")["data"]
    cluster = kafka_topics.STRIMZI_CLUSTER
    assert env["RELAYSTREAM_KAFKA_BOOTSTRAP"] == f"{cluster}-kafka-bootstrap:9092"
    assert env["RELAYSTREAM_TOPIC_PREFIX"] == kafka_topics.TOPIC_PREFIX
    kafkas = of_kind(resources, "Kafka")
    if overlay == "prod":
        assert kafkas == []  # a cluster run elsewhere
        return
    (kafka,) = kafkas
    assert kafka["metadata"]["name"] == cluster
    assert kafka["metadata"]["annotations"] == {
        "strimzi.io/kraft": "enabled",
        "strimzi.io/node-pools": "enabled",
    }
    assert kafka["spec"]["kafka"]["version"] == "4.1.1"
    plain = [
        listener for listener in kafka["spec"]["kafka"]["listeners"] if listener["port"] == 9092
    ]
    assert plain and plain[0]["tls"] is False and plain[0]["type"] == "internal"
    pools = of_kind(resources, "KafkaNodePool")
    assert all(p["metadata"]["labels"]["strimzi.io/cluster"] == cluster for p in pools)
    brokers = sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"])
    controllers = sum(p["spec"]["replicas"] for p in pools if "controller" in p["spec"]["roles"])
    assert controllers % 2 == 1  # a KRaft quorum needs a majority
    for topic in of_kind(resources, "KafkaTopic"):
        replicas = topic["spec"]["replicas"]
        min_insync = int(topic["spec"]["config"]["min.insync.replicas"])
        assert replicas <= brokers
        # acks=all writes keep working with one broker down, except on a one-broker cluster.
        assert min_insync < replicas or replicas == 1


def test_resource_names_are_valid_kubernetes_names() -> None:
    assert kafka_topics.resource_name("relaystream.queue-config") == "relaystream.queue-config"
    assert kafka_topics.resource_name("Prod_Mail.dead-letter") == "prod-mail.dead-letter"
    with pytest.raises(ValueError):
        kafka_topics.resource_name("__")
