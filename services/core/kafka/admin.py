"""Create the declared topics and report those whose settings differ from the declaration.

An existing topic is never changed: changing partition counts breaks co-partitioning and key
placement, and changing cleanup.policy can delete data. Drift is reported for an operator to
decide.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import for_code

from .topics import TopicSpec

_NO_ERROR = 0
_TOPIC_ALREADY_EXISTS = 36


class TopicAdminError(Exception):
    """The broker refused a topic request for a reason other than the topic existing."""


@dataclass(frozen=True)
class ExistingTopic:
    """What the cluster says about one topic."""

    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str]


@dataclass(frozen=True)
class TopicDrift:
    topic: str
    setting: str
    declared: str
    actual: str

    def __str__(self) -> str:
        return f"{self.topic}: {self.setting} is {self.actual!r}, declared {self.declared!r}"


@dataclass(frozen=True)
class EnsureReport:
    created: tuple[str, ...]
    matching: tuple[str, ...]
    drifts: tuple[TopicDrift, ...]

    @property
    def ok(self) -> bool:
        return not self.drifts


def _same_setting(setting: str, declared: str, actual: str) -> bool:
    if setting == "cleanup.policy":
        # A list: "compact,delete" equals "delete,compact".
        return {p.strip() for p in declared.split(",")} == {p.strip() for p in actual.split(",")}
    return declared == actual


def find_drift(spec: TopicSpec, existing: ExistingTopic) -> list[TopicDrift]:
    """How an existing topic differs from its declaration (partitions, replicas, configs)."""
    drifts: list[TopicDrift] = []
    if existing.partitions != spec.partitions:
        drifts.append(
            TopicDrift(spec.name, "partitions", str(spec.partitions), str(existing.partitions))
        )
    if existing.replication_factor != spec.replication_factor:
        drifts.append(
            TopicDrift(
                spec.name,
                "replication.factor",
                str(spec.replication_factor),
                str(existing.replication_factor),
            )
        )
    for setting, declared in spec.configs().items():
        actual = existing.configs.get(setting, "<unset>")
        if not _same_setting(setting, declared, actual):
            drifts.append(TopicDrift(spec.name, setting, declared, actual))
    return drifts


@contextlib.asynccontextmanager
async def _admin_client(bootstrap: str, request_timeout_ms: int) -> AsyncIterator[Any]:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="relaystream-topics",
        request_timeout_ms=request_timeout_ms,
    )
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def _describe(admin: Any, names: list[str]) -> dict[str, ExistingTopic]:
    if not names:
        return {}
    metadata = await admin.describe_topics(names)
    shapes: dict[str, tuple[int, int]] = {}
    for topic in metadata:
        if topic["error_code"] != _NO_ERROR or not topic["partitions"]:
            continue  # unknown topic
        replicas = min(len(partition["replicas"]) for partition in topic["partitions"])
        shapes[topic["topic"]] = (len(topic["partitions"]), replicas)
    if not shapes:
        return {}
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name) for name in shapes]
    )
    configs: dict[str, dict[str, str]] = {}
    for response in responses:
        for resource in response.to_object()["resources"]:
            if resource["error_code"] != _NO_ERROR:
                raise TopicAdminError(
                    f"describing configs of {resource['resource_name']} failed: "
                    f"{resource['error_message']}"
                )
            configs[resource["resource_name"]] = {
                entry["config_names"]: entry["config_value"] or ""
                for entry in resource["config_entries"]
            }
    return {
        name: ExistingTopic(name, partitions, replicas, configs.get(name, {}))
        for name, (partitions, replicas) in shapes.items()
    }


async def _describe_when_visible(
    admin: Any, names: list[str], timeout_ms: int
) -> dict[str, ExistingTopic]:
    """Describe topics the controller says exist but this broker's metadata may not show yet."""
    deadline = time.monotonic() + timeout_ms / 1000
    found: dict[str, ExistingTopic] = {}
    while True:
        found.update(await _describe(admin, [name for name in names if name not in found]))
        if len(found) == len(names):
            return found
        if time.monotonic() >= deadline:
            missing = sorted(set(names) - set(found))
            raise TopicAdminError(f"topics exist but cannot be described: {', '.join(missing)}")
        await asyncio.sleep(0.2)


async def describe_topics(
    bootstrap: str, names: Iterable[str], *, request_timeout_ms: int = 30_000
) -> dict[str, ExistingTopic]:
    """The topics among `names` that exist, with partition count, replicas and configs."""
    async with _admin_client(bootstrap, request_timeout_ms) as admin:
        return await _describe(admin, list(names))


async def ensure_topics(
    bootstrap: str, specs: Iterable[TopicSpec], *, request_timeout_ms: int = 30_000
) -> EnsureReport:
    """Create every declared topic that is missing; report (never change) those that differ."""
    declared = {spec.name: spec for spec in specs}
    async with _admin_client(bootstrap, request_timeout_ms) as admin:
        existing = await _describe(admin, list(declared))
        missing = [spec for name, spec in declared.items() if name not in existing]
        created: list[str] = []
        raced: list[str] = []
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        spec.name,
                        spec.partitions,
                        spec.replication_factor,
                        topic_configs=spec.configs(),
                    )
                    for spec in missing
                ]
            )
            for result in response.to_object()["topic_errors"]:
                code = result["error_code"]
                if code == _NO_ERROR:
                    created.append(result["topic"])
                elif code == _TOPIC_ALREADY_EXISTS:
                    # Created meanwhile by another instance: compare it like any existing one.
                    raced.append(result["topic"])
                else:
                    raise TopicAdminError(
                        f"creating {result['topic']} failed: {for_code(code).__name__}: "
                        f"{result['error_message']}"
                    )
        existing.update(await _describe_when_visible(admin, raced, request_timeout_ms))
    drifts: list[TopicDrift] = []
    matching: list[str] = []
    for name, spec in declared.items():
        if name not in existing:
            continue  # created above
        topic_drifts = find_drift(spec, existing[name])
        drifts.extend(topic_drifts)
        if not topic_drifts:
            matching.append(name)
    return EnsureReport(created=tuple(created), matching=tuple(matching), drifts=tuple(drifts))
