"""The routing service: MessageAccepted from `accepted` becomes a routing decision.

For each message the reception policy runs, the scheduled queue name is computed and the
service produces, and waits for Kafka to acknowledge:
- a RoutingDecision on `decisions` (key = message id);
- a QueuedMessage on `queued` (key = message id, partition = the queue's partition), unless
  the message was rejected or discarded (queue `null`);
- a Reception LogRecord on `log` (a Rejection record when rejected).
Undecodable or unroutable records go to `dead-letter`; a failing policy rejects the message
(`451 4.3.0`) and dead-letters a copy for a replay.

The faust worker runs inside the kit's lifecycle (`run_service`): SIGTERM stops intake, waits
for the in-flight decisions, then stops faust, which commits the acked offsets.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path

from ..core.events.codec import encode
from ..core.kafka.dead_letter import DeadLetters
from ..core.kafka.producer import EventProducer
from ..core.kafka.topics import DEFAULT_PREFIX, TopicCatalog, TopicSettings, declare_topics
from ..core.policy import Policy
from ..core.runtime.logging import configure_logging
from ..core.runtime.service import EXIT_OK, ServiceMain, ServiceRuntime, run_service
from ..core.runtime.settings import Settings
from .app import AppConfig, RoutingApp, build_app, dedup_table_window
from .router import Router

log = logging.getLogger(__name__)

SERVICE_NAME = "routing"
# Without a policy file every message keeps its meta: queue = the recipient's domain.
DEFAULT_POLICY_NAME = "default.lua"
DEFAULT_POLICY_SOURCE = "-- relaystream default: no reception handler, meta unchanged\n"


def topic_catalog(settings: Settings) -> TopicCatalog:
    """The topics of this deployment; an empty `topic_prefix` means the default prefix."""
    prefix = settings.runtime.topic_prefix or DEFAULT_PREFIX
    return declare_topics(TopicSettings(prefix=prefix))


def load_policy(settings: Settings) -> Policy:
    path = settings.routing.policy_path
    if path is None:
        return Policy.from_source(DEFAULT_POLICY_SOURCE, DEFAULT_POLICY_NAME)
    return Policy.load(path)


def group_id(topics: TopicCatalog) -> str:
    """The consumer group (and faust app id): `<prefix>routing`, like the other services."""
    return f"{topics.accepted.name.removesuffix('accepted')}{SERVICE_NAME}"


def is_ready(routing: RoutingApp) -> bool:
    """Ready once faust started, the group assigned us and the table is recovered."""
    app = routing.app
    return bool(
        app.started
        and not app.rebalancing
        and app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
        and routing.agent.started
        and not routing.agent.should_stop
    )


def quiet_faust(level: str) -> None:
    """faust and mode log every service start and stop at INFO: keep that for DEBUG."""
    for name in ("faust", "mode"):
        logging.getLogger(name).setLevel("DEBUG" if level == "DEBUG" else "WARNING")


def routing_main(settings: Settings) -> ServiceMain:
    """The service's main for `run_service` (tests run it without signal handling)."""

    async def main(runtime: ServiceRuntime) -> None:
        quiet_faust(settings.runtime.log_level)
        topics = topic_catalog(settings)
        bootstrap = settings.runtime.kafka_bootstrap
        client_id = settings.runtime.kafka_client_id or SERVICE_NAME
        policy = load_policy(settings)
        log.info("policy loaded", extra={"policy": policy.name, "policy_hash": policy.content_hash})
        group = group_id(topics)
        async with EventProducer(bootstrap, client_id=client_id) as producer:
            router = Router(
                policy=policy,
                producer=producer,
                dead_letters=DeadLetters(
                    producer, topic=topics.dead_letter.name, service=SERVICE_NAME, encode=encode
                ),
                topics=topics,
                queued_partitions=await producer.partitions_for(topics.queued.name),
                group=group,
                max_in_flight=settings.routing.max_in_flight,
                window_seconds=dedup_table_window(settings.routing.dedup_window_seconds),
            )
            with tempfile.TemporaryDirectory(prefix="relaystream-routing-") as datadir:
                config = AppConfig(
                    app_id=group,
                    bootstrap=bootstrap,
                    client_id=client_id,
                    accepted_partitions=await producer.partitions_for(topics.accepted.name),
                    dedup_window_seconds=settings.routing.dedup_window_seconds,
                    changelog_replication_factor=settings.routing.changelog_replication_factor,
                    datadir=Path(datadir),
                )
                routing = build_app(config, topics, router)
                await _run_app(runtime, routing, router)

    return main


async def _run_app(runtime: ServiceRuntime, routing: RoutingApp, router: Router) -> None:
    app = routing.app
    runtime.health.add_readiness_check("faust", lambda: is_ready(routing))
    runtime.health.add_liveness_check("faust", lambda: not app.should_stop)
    await app.start()
    runtime.health.set_ready(True)
    stopped = asyncio.ensure_future(app.wait_until_stopped())
    shutdown = asyncio.ensure_future(runtime.wait_for_shutdown())
    try:
        await asyncio.wait({stopped, shutdown}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        shutdown.cancel()
        stopped.cancel()
        runtime.health.set_ready(False, "stopping")
        # Half the grace period for in-flight decisions; faust's stop commits what was acked.
        drained = await router.drain(within=runtime.settings.shutdown_grace_seconds / 2)
        if not drained:
            log.warning("in-flight decisions abandoned at shutdown: they will be routed again")
        await app.stop()
    if not runtime.shutdown_requested.is_set():
        raise RuntimeError(f"faust stopped on its own: {app.crash_reason!r}")


async def run_routing(settings: Settings) -> None:
    """`relaystream run routing`: run until SIGTERM/SIGINT; SystemExit if the service failed."""
    configure_logging(SERVICE_NAME, settings.runtime.log_level)
    code = await run_service(SERVICE_NAME, routing_main(settings), settings.runtime)
    if code != EXIT_OK:
        raise SystemExit(code)
