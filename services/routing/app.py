"""The faust App of the routing service: one agent on `accepted` and the decided-ids table.

Programmatic, no autodiscovery, faust's web server off (the kit's health endpoint serves the
probes), no leader-election topic. Our declared topics are plain, non-internal faust topics
with their real partition counts: faust never creates or alters them (`relaystream topics
ensure` does). The only topic faust creates is its own changelog of the decided-ids table,
`<prefix>routing-decided-changelog`, co-partitioned with `accepted`.

The decided-ids table is windowed (tumbling windows of `DEDUP_WINDOW_FRACTION` of the dedup
window, by the `accepted` record's timestamp, expiring after the dedup window): a redelivered
record has the timestamp it had the first time, so it is looked up in the same window, and
old ids leave memory and, through the changelog's `compact,delete` retention, Kafka.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import faust

from ..core.kafka.topics import TopicCatalog
from .router import Router

AGENT_NAME = "route"
TABLE_NAME = "decided"
# A window spans this share of the dedup window; ids live on for one extra window at most.
DEDUP_WINDOW_FRACTION = 24


@dataclass(frozen=True)
class AppConfig:
    app_id: str
    bootstrap: str
    client_id: str
    accepted_partitions: int
    dedup_window_seconds: float
    changelog_replication_factor: int
    datadir: Path
    commit_interval_seconds: float = 1.0


@dataclass
class RoutingApp:
    """The faust app with its agent and table."""

    app: faust.App
    agent: Any
    decided: Any


def dedup_table_window(dedup_window_seconds: float) -> float:
    """The size of one window of the decided-ids table, in seconds."""
    return dedup_window_seconds / DEDUP_WINDOW_FRACTION


def broker_urls(bootstrap: str) -> list[str]:
    """`host:port,host:port` as faust's broker URL list."""
    return [f"kafka://{server.strip()}" for server in bootstrap.split(",") if server.strip()]


def build_app(config: AppConfig, topics: TopicCatalog, router: Router) -> RoutingApp:
    app = faust.App(
        config.app_id,
        broker=broker_urls(config.bootstrap),
        broker_client_id=config.client_id,
        autodiscover=False,
        web_enabled=False,
        topic_disable_leader=True,
        topic_replication_factor=config.changelog_replication_factor,
        processing_guarantee="at_least_once",
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=config.commit_interval_seconds,
        # Our agent drains its own in-flight events before the app stops; faust's wait for
        # an empty consumer would otherwise hang on an event given up at shutdown.
        stream_wait_empty=False,
        store="memory://",
        datadir=str(config.datadir),
    )
    accepted = app.topic(
        topics.accepted.name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=config.accepted_partitions,
        internal=False,
    )
    window = timedelta(seconds=config.dedup_window_seconds)
    decided = (
        app.Table(
            TABLE_NAME,
            default=int,
            partitions=config.accepted_partitions,
            # Windowed keys are (id, (start, end)) tuples: JSON, not the app's raw bytes.
            schema=faust.Schema(key_serializer="json", value_serializer="json"),
        )
        .tumbling(dedup_table_window(config.dedup_window_seconds), expires=window)
        .relative_to_stream()
    )

    async def route(stream: Any) -> None:
        manual = stream.noack()
        async for event in manual.events():
            await router.take(event, decided, manual.ack)

    agent = app.agent(accepted, name=AGENT_NAME, concurrency=1)(route)
    return RoutingApp(app=app, agent=agent, decided=decided)
