"""The admin API's process routes (liveness, machine info, metrics, log filter, config epoch)
and KumoMTA's routes that do not apply to relaystream, which answer 501 with the reason."""

from __future__ import annotations

import logging
import socket
from datetime import datetime

from aiohttp import web
from prometheus_client import REGISTRY
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from ..core.runtime.log_filter import LogFilterError, apply_log_filter
from ..core.runtime.machine_info import machine_info
from ..core.runtime.metrics_json import metrics_json
from ..core.runtime.settings import Settings
from .admin_http import bad_request, json_object, not_implemented
from .ports import AdminApiPort

log = logging.getLogger(__name__)

PROCESS_KIND = "relaystream-scheduling"
_NO_XFER = (
    "xfer moves messages to another node's spool; relaystream's instances share one spool "
    "(the queued topic) and Kafka moves partitions between them on rebalance"
)


class AdminSystem:
    def __init__(self, scheduler: AdminApiPort, settings: Settings, started_at: datetime) -> None:
        self._scheduler = scheduler
        runtime = settings.runtime
        self._node_id = runtime.kafka_group_instance_id or socket.gethostname()
        self._started_at = started_at

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/check-liveness/v1", self.check_liveness)
        router.add_get("/api/machine-info", self.machine_info)
        router.add_get("/metrics", self.metrics)
        router.add_get("/metrics.json", self.metrics_json)
        router.add_post("/api/admin/bump-config-epoch", self.bump_config_epoch)
        router.add_post("/api/admin/set_diagnostic_log_filter/v1", self.set_log_filter)
        router.add_post("/api/admin/xfer/v1", self.xfer)
        router.add_post("/api/admin/xfer/cancel/v1", self.xfer)

    async def check_liveness(self, request: web.Request) -> web.StreamResponse:
        if self._scheduler.ready:
            return web.Response(text="ready to schedule messages")
        return web.Response(status=503, text="not ready: partitions are being built")

    async def machine_info(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(machine_info(PROCESS_KIND, self._node_id, self._started_at))

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def metrics_json(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(metrics_json(REGISTRY))

    async def bump_config_epoch(self, request: web.Request) -> web.StreamResponse:
        self._scheduler.configs.bump_epoch()
        log.info("config epoch bumped: queue configs are asked of the policy again")
        return web.Response(text="bump successful")

    async def set_log_filter(self, request: web.Request) -> web.StreamResponse:
        body = await json_object(request, ("filter",))
        spec = body.get("filter")
        if not isinstance(spec, str):
            raise bad_request("filter: required, a string")
        try:
            directives = apply_log_filter(spec)
        except LogFilterError as error:
            raise bad_request(f"filter: {error}") from None
        log.warning("diagnostic log filter set", extra={"filter": spec})
        applied = ", ".join(
            f"{d.logger or 'root'}={logging.getLevelName(d.level)}" for d in directives
        )
        return web.Response(text=f"diagnostic level set: {applied}")

    async def xfer(self, request: web.Request) -> web.StreamResponse:
        raise not_implemented(_NO_XFER)
