"""JSON schemas for the Strimzi resources this repository uses, written for these tests.

They cover the `kafka.strimzi.io/v1beta2` fields that k8s/ uses, with the types and allowed
values from Strimzi's documented API reference (Kafka, KafkaNodePool, KafkaTopic). Every object
we describe rejects unknown fields. The API server would prune an unknown field of a structural
CRD silently, so a misspelt field here is an error instead of a setting that quietly vanishes.
Maps of broker or topic settings (`config`) and Kubernetes types embedded whole
(`networkPolicyPeers`, `resources`) stay open. Adding a field to k8s/ means describing it
here first.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


def strict(properties: Schema, required: tuple[str, ...] = ()) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


STRING_MAP: Schema = {"type": "object", "additionalProperties": {"type": "string"}}
OPEN_OBJECT: Schema = {"type": "object"}
# Broker and topic configs: values are strings, numbers or booleans, as Strimzi accepts them.
CONFIG: Schema = {
    "type": "object",
    "additionalProperties": {"type": ["string", "integer", "number", "boolean"]},
}

METADATA: Schema = strict(
    {
        "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
        "namespace": {"type": "string"},
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
    },
    required=("name",),
)

RESOURCES: Schema = strict(
    {
        "requests": {"type": "object", "additionalProperties": {"type": ["string", "integer"]}},
        "limits": {"type": "object", "additionalProperties": {"type": ["string", "integer"]}},
    }
)

VOLUME: Schema = strict(
    {
        "id": {"type": "integer", "minimum": 0},
        "type": {"enum": ["ephemeral", "persistent-claim"]},
        "size": {"type": "string"},
        "class": {"type": "string"},
        "deleteClaim": {"type": "boolean"},
        "kraftMetadata": {"enum": ["shared"]},
    },
    required=("type",),
)

STORAGE: Schema = strict(
    {
        "type": {"enum": ["jbod", "ephemeral", "persistent-claim"]},
        "volumes": {"type": "array", "items": VOLUME},
        "size": {"type": "string"},
        "deleteClaim": {"type": "boolean"},
    },
    required=("type",),
)

LISTENER: Schema = strict(
    {
        "name": {"type": "string", "pattern": "^[a-z0-9]{1,11}$"},
        "port": {"type": "integer", "minimum": 9092},
        "type": {
            "enum": ["internal", "route", "loadbalancer", "nodeport", "ingress", "cluster-ip"]
        },
        "tls": {"type": "boolean"},
        "networkPolicyPeers": {"type": "array", "items": OPEN_OBJECT},
    },
    required=("name", "port", "type", "tls"),
)


def resource(kind: str, spec: Schema) -> Schema:
    return strict(
        {
            "apiVersion": {"const": "kafka.strimzi.io/v1beta2"},
            "kind": {"const": kind},
            "metadata": METADATA,
            "spec": spec,
        },
        required=("apiVersion", "kind", "metadata", "spec"),
    )


SCHEMAS: dict[str, Schema] = {
    "Kafka": resource(
        "Kafka",
        strict(
            {
                "kafka": strict(
                    {
                        "version": {"type": "string"},
                        "listeners": {"type": "array", "items": LISTENER, "minItems": 1},
                        "config": CONFIG,
                        "resources": RESOURCES,
                    },
                    required=("listeners",),
                ),
                "entityOperator": strict(
                    {"topicOperator": OPEN_OBJECT, "userOperator": OPEN_OBJECT}
                ),
            },
            required=("kafka",),
        ),
    ),
    "KafkaNodePool": resource(
        "KafkaNodePool",
        strict(
            {
                "replicas": {"type": "integer", "minimum": 0},
                "roles": {
                    "type": "array",
                    "items": {"enum": ["controller", "broker"]},
                    "minItems": 1,
                },
                "storage": STORAGE,
                "resources": RESOURCES,
            },
            required=("replicas", "roles", "storage"),
        ),
    ),
    "KafkaTopic": resource(
        "KafkaTopic",
        strict(
            {
                "topicName": {"type": "string"},
                "partitions": {"type": "integer", "minimum": 1},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
                "config": CONFIG,
            }
        ),
    ),
}
