"""Strimzi KafkaTopic resources built from the code's one topic declaration.

`services/core/kafka/topics.py` declares every topic; the KafkaTopic manifests in k8s/ are
generated from it, and the tests compare the rendered overlays with what this module builds:

    python -m tests.deploy.kafka_topics --write   # regenerate after changing topics.py

k8s/base/kafka-topics.yaml holds the production preset (`TopicSettings.production`); the dev
overlay patches it to the local preset (`TopicSettings.local`).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from relaystream.core.kafka.topics import TopicCatalog, TopicSettings, TopicSpec, declare_topics

REPO_ROOT = Path(__file__).resolve().parents[2]
BASE_TOPICS_FILE = REPO_ROOT / "k8s" / "base" / "kafka-topics.yaml"
DEV_TOPICS_PATCH_FILE = REPO_ROOT / "k8s" / "overlays" / "dev" / "kafka-topics-local.yaml"

# Must equal the Kafka resource's name (k8s/components/*/kafka.yaml) and the host part of
# RELAYSTREAM_KAFKA_BOOTSTRAP (`<cluster>-kafka-bootstrap`): the tests check both.
STRIMZI_CLUSTER = "relaystream"
# Must equal RELAYSTREAM_TOPIC_PREFIX in k8s/base/kustomization.yaml (checked by the tests).
TOPIC_PREFIX = "relaystream."

STRIMZI_API_VERSION = "kafka.strimzi.io/v1beta2"
_HEADER = (
    "# Generated from services/core/kafka/topics.py ({preset}) by\n"
    "# `python -m tests.deploy.kafka_topics --write`. Do not edit: tests/deploy checks it.\n"
)


def resource_name(topic_name: str) -> str:
    """A valid Kubernetes object name for a topic (DNS-1123 subdomain); spec.topicName keeps
    the exact topic name, so this only needs to be unique and stable."""
    name = re.sub(r"[^a-z0-9.-]+", "-", topic_name.lower()).strip(".-")
    if not name:
        raise ValueError(f"topic name {topic_name!r} gives no Kubernetes name")
    return name[:253]


def kafka_topic(spec: TopicSpec, cluster: str = STRIMZI_CLUSTER) -> dict[str, Any]:
    """The KafkaTopic resource that makes Strimzi's Topic Operator create `spec`'s topic."""
    return {
        "apiVersion": STRIMZI_API_VERSION,
        "kind": "KafkaTopic",
        "metadata": {
            "name": resource_name(spec.name),
            "labels": {"strimzi.io/cluster": cluster},
        },
        "spec": {
            "topicName": spec.name,
            "partitions": spec.partitions,
            "replicas": spec.replication_factor,
            "config": spec.configs(),
        },
    }


def kafka_topics(catalog: TopicCatalog, cluster: str = STRIMZI_CLUSTER) -> list[dict[str, Any]]:
    return [kafka_topic(spec, cluster) for spec in catalog]


def topics_patch(catalog: TopicCatalog) -> list[dict[str, Any]]:
    """Patches that turn the base's KafkaTopics into `catalog`'s (same topics, other sizes)."""
    patches = []
    for resource in kafka_topics(catalog):
        spec = resource["spec"]
        patches.append(
            {
                "apiVersion": resource["apiVersion"],
                "kind": resource["kind"],
                "metadata": {"name": resource["metadata"]["name"]},
                "spec": {
                    "partitions": spec["partitions"],
                    "replicas": spec["replicas"],
                    "config": spec["config"],
                },
            }
        )
    return patches


def production_catalog(prefix: str = TOPIC_PREFIX) -> TopicCatalog:
    return declare_topics(TopicSettings.production(prefix=prefix))


def local_catalog(prefix: str = TOPIC_PREFIX) -> TopicCatalog:
    return declare_topics(TopicSettings.local(prefix=prefix))


def dump_documents(documents: list[dict[str, Any]], header: str) -> str:
    body = yaml.safe_dump_all(documents, sort_keys=False, explicit_start=False)
    return header + body


def base_topics_text() -> str:
    return dump_documents(
        kafka_topics(production_catalog()), _HEADER.format(preset="TopicSettings.production")
    )


def dev_topics_patch_text() -> str:
    return dump_documents(
        topics_patch(local_catalog()), _HEADER.format(preset="TopicSettings.local")
    )


def generated_files() -> dict[Path, str]:
    return {BASE_TOPICS_FILE: base_topics_text(), DEV_TOPICS_PATCH_FILE: dev_topics_patch_text()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the generated files")
    args = parser.parse_args(argv)
    stale = []
    for path, text in generated_files().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(REPO_ROOT)}")
        else:
            stale.append(path)
    for path in stale:
        print(f"stale: {path.relative_to(REPO_ROOT)} (run with --write)", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
