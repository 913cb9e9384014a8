"""The HTTP endpoint every service has: /healthz, /readyz and /metrics.

- `/healthz` answers 200 while the process and its event loop run (and every liveness check
  passes): Kubernetes restarts the pod otherwise.
- `/readyz` answers 200 only once the service called `set_ready(True)` and every readiness check
  passes, 503 with the reasons otherwise (e.g. a consumer not yet assigned or caught up).
  Detail checks do not decide readiness: the ones failing are listed under "waiting" (e.g.
  ingest's `submit` consumer still joining its group while SMTP and HTTP already accept mail).
- `/metrics` is the Prometheus text exposition of the process's registry.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from .settings import HostPort

log = logging.getLogger(__name__)

# A check returns True when healthy; it may be async (e.g. asks Kafka for end offsets).
Check = Callable[[], bool | Awaitable[bool]]


class HealthServer:
    """Serves the probes and metrics of one service on `bind` (port 0 picks a free port)."""

    def __init__(self, bind: HostPort, registry: CollectorRegistry = REGISTRY) -> None:
        self._bind = bind
        self._registry = registry
        self._ready = False
        self._not_ready_reason = "starting"
        self._readiness_checks: dict[str, Check] = {}
        self._liveness_checks: dict[str, Check] = {}
        self._detail_checks: dict[str, Check] = {}
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    def set_ready(self, ready: bool, reason: str = "") -> None:
        """Declare the service ready (or not, with a reason shown by /readyz)."""
        if ready != self._ready:
            log.info("readiness changed", extra={"ready": ready, "reason": reason})
        self._ready = ready
        self._not_ready_reason = reason or "not ready"

    @property
    def ready(self) -> bool:
        return self._ready

    def add_readiness_check(self, name: str, check: Check) -> None:
        """/readyz also requires `check()` to return True."""
        self._readiness_checks[name] = check

    def add_detail_check(self, name: str, check: Check) -> None:
        """/readyz lists `name` under "waiting" while `check()` is False, without failing."""
        self._detail_checks[name] = check

    def add_liveness_check(self, name: str, check: Check) -> None:
        """/healthz also requires `check()` to return True."""
        self._liveness_checks[name] = check

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        if self._port is None:
            raise RuntimeError("the health server is not started")
        return self._port

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._bind.host, self._bind.port)
        await site.start()
        server = site._server  # aiohttp exposes the bound sockets only here
        sockets = getattr(server, "sockets", None) or []
        self._port = int(sockets[0].getsockname()[1]) if sockets else self._bind.port
        log.info("health endpoint listening", extra={"host": self._bind.host, "port": self._port})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _failing(self, checks: dict[str, Check]) -> list[str]:
        failing = []
        for name, check in checks.items():
            try:
                result = check()
                passed = await result if inspect.isawaitable(result) else result
            except Exception:
                log.exception("health check raised", extra={"check": name})
                passed = False
            if not passed:
                failing.append(name)
        return failing

    @staticmethod
    def _json(status: int, body: dict[str, object]) -> web.Response:
        return web.Response(status=status, text=json.dumps(body), content_type="application/json")

    async def _healthz(self, request: web.Request) -> web.Response:
        failing = await self._failing(self._liveness_checks)
        if failing:
            return self._json(503, {"alive": False, "failing": failing})
        return self._json(200, {"alive": True})

    async def _readyz(self, request: web.Request) -> web.Response:
        reasons = [] if self._ready else [self._not_ready_reason]
        reasons += await self._failing(self._readiness_checks)
        waiting = await self._failing(self._detail_checks)
        detail: dict[str, object] = {"waiting": waiting} if waiting else {}
        if reasons:
            return self._json(503, {"ready": False, "reasons": reasons, **detail})
        return self._json(200, {"ready": True, **detail})

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self._registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )
