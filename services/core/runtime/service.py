"""A service's lifecycle: logs, the health endpoint, signals and graceful shutdown.

`run_service(name, main, settings)` starts the health endpoint, runs `main(runtime)` and turns
SIGTERM/SIGINT into `runtime.shutdown_requested`. `main` is expected to stop taking new work
when that event is set, finish what is in flight, commit and close, then return. If it has not
returned `shutdown_grace_seconds` after the signal, it is cancelled: its `finally` blocks still
run (a consumer commits what finished), unfinished work is redelivered after the restart.
A second signal cancels at once. Kubernetes' terminationGracePeriodSeconds should exceed the
grace period by a few seconds so the cancellation itself has time to commit.

    async def main(runtime: ServiceRuntime) -> None:
        async with EventConsumer(...) as consumer:
            runtime.health.add_readiness_check("consumer", consumer.caught_up)
            runtime.health.set_ready(True)
            await consumer.run(handle, concurrency=8, stop=runtime.shutdown_requested)

    sys.exit(run("delivery", main, settings.runtime))
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .health import HealthServer
from .logging import configure_logging
from .settings import RuntimeSettings, unknown_environment_variables

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1

# After the grace period main is cancelled; this is how long its cleanup may then take.
_CANCEL_CLEANUP_SECONDS = 5.0


@dataclass
class ServiceRuntime:
    """What `main` gets: its name, settings, health endpoint and the shutdown signal."""

    name: str
    settings: RuntimeSettings
    health: HealthServer
    shutdown_requested: asyncio.Event = field(default_factory=asyncio.Event)
    shutdown_reason: str = ""

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


async def run_service(
    name: str,
    main: ServiceMain,
    settings: RuntimeSettings,
    *,
    handle_signals: bool = True,
    runtime_ready: Callable[[ServiceRuntime], None] | None = None,
) -> int:
    """Run `main` as the service `name` until it returns; the process exit code.

    `runtime_ready` is called with the runtime once the health endpoint listens (tests use it
    to learn the port and to request shutdown without a signal).
    """
    health = HealthServer(settings.http_bind)
    runtime = ServiceRuntime(name=name, settings=settings, health=health)
    await health.start()
    loop = asyncio.get_running_loop()
    main_task: asyncio.Task[None] = asyncio.ensure_future(main(runtime))
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


async def _supervise(runtime: ServiceRuntime, main_task: asyncio.Task[None]) -> int:
    shutdown = asyncio.ensure_future(runtime.shutdown_requested.wait())
    try:
        await asyncio.wait({main_task, shutdown}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        shutdown.cancel()
    if not main_task.done():
        grace = runtime.settings.shutdown_grace_seconds
        done, _ = await asyncio.wait({main_task}, timeout=grace)
        if not done:
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


def run(name: str, main: ServiceMain, settings: RuntimeSettings) -> int:
    """The entry point of a service process: configure logs, run, return the exit code."""
    configure_logging(name, settings.log_level)
    for variable in unknown_environment_variables():
        log.warning("ignoring an unknown RELAYSTREAM_ variable", extra={"variable": variable})
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run_service(name, main, settings))
    return EXIT_FAILED
