"""The one way to run a service: a service declares itself, the runtime does the rest.

A service module declares a `ServiceSpec`: its name, the consumer groups it joins and the
topics each subscribes to, the topics it reads without a group and those it produces, and its
`main`. It repeats no start-up code. `run(spec)` (what `relaystream run NAME` calls) then, for
every service alike:

1. loads and validates the settings (file, then `RELAYSTREAM_*`; a bad value is an error that
   names it, exit 2) and warns about each `RELAYSTREAM_*` variable that names no setting;
2. configures the JSON logs (core/runtime/logging.py), one record shape for every service;
3. derives the deployment's topics, consumer groups and transactional ids from the one
   catalogue (core/kafka/topics.py `deployment_topics`) and logs the declared topology;
4. serves /healthz, /readyz and /metrics (health.py) and runs `main(runtime)` on uvloop;
5. turns SIGTERM/SIGINT into `runtime.shutdown_requested`: `main` stops taking work, finishes
   what is in flight, commits and returns (the drain). If it has not returned
   `shutdown_grace_seconds` after the signal it is cancelled: its `finally` blocks still run (a
   consumer commits what finished), unfinished work is redelivered after the restart. A second
   signal cancels at once. Kubernetes' terminationGracePeriodSeconds should exceed the grace
   period by a few seconds so the cancellation itself has time to commit.

    async def main(runtime: ServiceRuntime) -> None:
        async with EventConsumer(group_id=runtime.group_id("delivery"), ...) as consumer:
            runtime.health.set_ready(True)
            await consumer.run(handle, concurrency=8, stop=runtime.shutdown_requested)

    SERVICE = ServiceSpec(
        name="delivery",
        main=main,
        groups={"delivery": (TopicRole.ATTEMPTS,)},
        produces=(TopicRole.OUTCOMES, TopicRole.LOG, TopicRole.DEAD_LETTER),
    )

Like KumoMTA's daemons, which all start through one life cycle (kumo-server-lifecycle): one
shutdown request, seen by every part of the process, then a wait for the work in flight, saying
what it still waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from ..kafka.producer import CompressionUnavailable, use_compression
from ..kafka.topics import TopicCatalog, TopicRole, deployment_topics
from . import event_loop
from .health import HealthServer
from .logging import configure_logging
from .settings import Settings, SettingsError, load_settings, unknown_environment_variables

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_SETTINGS = 2

# After the grace period main is cancelled; this is how long its cleanup may then take.
_CANCEL_CLEANUP_SECONDS = 5.0
# While draining, how often to say that the service still waits for its work in flight.
_DRAIN_REPORT_SECONDS = 5.0


@dataclass
class ServiceRuntime:
    """What `main` gets: its declaration, settings, topics, health endpoint and the shutdown
    signal."""

    spec: ServiceSpec
    settings: Settings
    topics: TopicCatalog
    health: HealthServer
    shutdown_requested: asyncio.Event = field(default_factory=asyncio.Event)
    shutdown_reason: str = ""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def client_id(self) -> str:
        """The Kafka client id: the setting, else the service name."""
        return self.settings.runtime.kafka_client_id or self.spec.name

    def group_id(self, group: str) -> str:
        """The deployment's name of a consumer group the service declared."""
        if group not in self.spec.groups:
            raise ValueError(f"{self.spec.name} declares no consumer group {group!r}")
        return self.topics.group_id(group)

    def request_shutdown(self, reason: str) -> None:
        """Ask `main` to stop gracefully (what SIGTERM does)."""
        if not self.shutdown_requested.is_set():
            log.info("shutdown requested", extra={"reason": reason})
            self.shutdown_reason = reason
            self.health.set_ready(False, f"shutting down: {reason}")
            self.shutdown_requested.set()

    async def wait_for_shutdown(self) -> None:
        await self.shutdown_requested.wait()


ServiceMain = Callable[[ServiceRuntime], Awaitable[None]]


@dataclass(frozen=True)
class ServiceSpec:
    """What a service declares; `run` does everything else."""

    name: str
    main: ServiceMain
    # Consumer group (without the deployment's prefix) -> the topics it subscribes to.
    groups: Mapping[str, tuple[TopicRole, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    # Topics read outside any group: rebuilds, followers of control topics, lookups.
    reads: tuple[TopicRole, ...] = ()
    produces: tuple[TopicRole, ...] = ()
    # Third-party loggers too chatty at INFO: kept at WARNING unless the level is DEBUG.
    quiet_loggers: tuple[str, ...] = ()

    def topology(self, topics: TopicCatalog) -> dict[str, object]:
        """The declared topics and groups under the deployment's names (logged at start)."""
        return {
            "groups": {
                topics.group_id(group): [topics.by_role(role).name for role in roles]
                for group, roles in self.groups.items()
            },
            "reads": [topics.by_role(role).name for role in self.reads],
            "produces": [topics.by_role(role).name for role in self.produces],
        }


async def run_service(
    spec: ServiceSpec,
    settings: Settings,
    *,
    handle_signals: bool = True,
    runtime_ready: Callable[[ServiceRuntime], None] | None = None,
) -> int:
    """Run the service until its `main` returns; the process exit code.

    `runtime_ready` is called with the runtime once the health endpoint listens (tests use it
    to learn the port and to request shutdown without a signal).
    """
    topics = deployment_topics(settings.runtime.topic_prefix)
    health = HealthServer(settings.runtime.http_bind)
    runtime = ServiceRuntime(spec=spec, settings=settings, topics=topics, health=health)
    log.info("starting", extra={"service": spec.name, **spec.topology(topics)})
    await health.start()
    loop = asyncio.get_running_loop()
    main_task: asyncio.Task[None] = asyncio.ensure_future(spec.main(runtime))
    signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()

    def on_signal(signum: signal.Signals) -> None:
        if runtime.shutdown_requested.is_set():
            log.warning("second signal: stopping now", extra={"signal": signum.name})
            main_task.cancel()
        else:
            runtime.request_shutdown(signum.name)

    for signum in signals:
        loop.add_signal_handler(signum, on_signal, signum)
    if runtime_ready is not None:
        runtime_ready(runtime)
    try:
        return await _supervise(runtime, main_task)
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        await health.stop()


async def _drain(runtime: ServiceRuntime, main_task: asyncio.Task[None]) -> bool:
    """Waits up to the grace period for `main` to finish its work; False if it did not."""
    grace = runtime.settings.runtime.shutdown_grace_seconds
    deadline = time.monotonic() + grace
    while (left := deadline - time.monotonic()) > 0:
        done, _ = await asyncio.wait({main_task}, timeout=min(left, _DRAIN_REPORT_SECONDS))
        if done:
            return True
        log.info("draining: waiting for work in flight", extra={"seconds_left": round(left, 1)})
    return main_task.done()


async def _supervise(runtime: ServiceRuntime, main_task: asyncio.Task[None]) -> int:
    shutdown = asyncio.ensure_future(runtime.shutdown_requested.wait())
    try:
        await asyncio.wait({main_task, shutdown}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        shutdown.cancel()
    if not main_task.done() and not await _drain(runtime, main_task):
        grace = runtime.settings.runtime.shutdown_grace_seconds
        log.error("graceful shutdown timed out: cancelling", extra={"grace_seconds": grace})
        main_task.cancel()
        await asyncio.wait({main_task}, timeout=_CANCEL_CLEANUP_SECONDS)
        return EXIT_FAILED
    if main_task.cancelled():
        log.error("service cancelled", extra={"service": runtime.name})
        return EXIT_FAILED
    error = main_task.exception()
    if error is not None:
        log.error("service failed", exc_info=error)
        return EXIT_FAILED
    log.info("service stopped", extra={"reason": runtime.shutdown_reason or "main returned"})
    return EXIT_OK


def configure_process(spec: ServiceSpec, settings: Settings) -> None:
    """Logs as every service logs, and a warning for each unknown `RELAYSTREAM_*` variable."""
    level = settings.runtime.log_level
    configure_logging(spec.name, level)
    for name in spec.quiet_loggers:
        logging.getLogger(name).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    for variable in unknown_environment_variables():
        log.warning("ignoring an unknown RELAYSTREAM_ variable", extra={"variable": variable})


def run(spec: ServiceSpec, config: Path | str | None = None) -> int:
    """The entry point of a service process: settings, logs, then the service; the exit code.

    `config` is the settings file (default `$RELAYSTREAM_CONFIG`).
    """
    try:
        settings = load_settings(config)
        use_compression(settings.runtime.kafka_compression)
    except (SettingsError, CompressionUnavailable) as error:
        # Before logging is configured: the one line an operator needs, on stderr.
        print(f"relaystream run {spec.name}: {error}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    configure_process(spec, settings)
    with contextlib.suppress(KeyboardInterrupt):
        return event_loop.run(run_service(spec, settings))
    return EXIT_FAILED
