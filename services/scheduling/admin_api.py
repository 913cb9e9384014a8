"""The admin HTTP API of a scheduling instance: KumoMTA's paths, verbs and JSON bodies.

The routes, and what each reports here, are in the OpenAPI document `admin_openapi.json`
(served at /api-docs/openapi.json) and the README's admin API table. Rules (suspend, bounce,
rebind, suspend-ready-q) are published on the `admin` topic, so every instance applies them to
its own partitions (every delivery instance suspend-ready-q to its ready queues); lists show
the topic's rules as this instance read them, and the counts of what this instance did.
Inspection answers from this instance's own partitions, the ready queues from the
`ready-queues` topic (every delivery instance's). Who may call:
`admin_auth.AdminAuth` (trusted hosts, bearer tokens, HTTP Basic).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from aiohttp import web

from ..core.domain.admin_rules import (
    AdminAction,
    AdminRule,
    AdminRuleError,
    rule_applies_to_rebind,
)
from ..core.domain.durations import DurationError, parse_duration
from ..core.kafka.admin_commands import cancel_rule, new_rule, publish_rule
from ..core.runtime.settings import Settings
from .admin_auth import AdminAuth
from .admin_http import (
    bad_request,
    json_object,
    ready_q_suspension_json,
    refuse_true,
    rule_json,
)
from .admin_inspect import AdminInspection
from .admin_system import AdminSystem
from .ports import AdminApiPort

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OPENAPI_PATH = "/api-docs/openapi.json"
OPENAPI_RESOURCE = "admin_openapi.json"

_PATHS = {
    AdminAction.SUSPEND: "/api/admin/suspend/v1",
    AdminAction.BOUNCE: "/api/admin/bounce/v1",
    AdminAction.REBIND: "/api/admin/rebind/v1",
    AdminAction.SUSPEND_READY_Q: "/api/admin/suspend-ready-q/v1",
}
_MATCHERS = ("campaign", "tenant", "domain", "routing_domain", "queue_names")
_LIFETIME = ("reason", "duration", "expires")
# KumoMTA's request fields per action (routing_domain on suspend, and duration, expires and
# queue_names on rebind, are relaystream's additions).
_FIELDS = {
    AdminAction.SUSPEND: (*_MATCHERS, *_LIFETIME),
    AdminAction.BOUNCE: (*_MATCHERS, *_LIFETIME, "suppress_logging"),
    AdminAction.REBIND: (
        *_MATCHERS,
        *_LIFETIME,
        "data",
        "always_flush",
        "suppress_logging",
        "trigger_rebind_event",
    ),
    AdminAction.SUSPEND_READY_Q: ("name", *_LIFETIME),
}
_NO_SUPPRESS = "every action on a message is logged (the log topic is the audit trail)"


def _optional_string(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None or (isinstance(value, str) and value):
        return value
    raise bad_request(f"{key}: expected a non-empty string")


def rule_from_request(
    action: AdminAction, body: dict[str, Any], now: datetime, created_by: str
) -> AdminRule:
    """A new rule from a KumoMTA-shaped request body; raises HTTPBadRequest when invalid."""
    if action is AdminAction.SUSPEND_READY_Q:
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise bad_request("name: required, the ready queue's name")
        body = {**body, "queue_names": [name]}
    refuse_true(body, "suppress_logging", _NO_SUPPRESS)
    refuse_true(body, "trigger_rebind_event", "relaystream's policy has no rebind event; "
                "`data` is set on each message's meta")  # fmt: skip
    refuse_true(body, "always_flush", "only messages whose queue changed are made due now")
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason:
        raise bad_request("reason: required")
    queues = body.get("queue_names") or []
    if not isinstance(queues, list) or not all(isinstance(q, str) for q in queues):
        raise bad_request("queue_names: expected a list of queue names")
    duration = None
    expires = None
    try:
        if body.get("duration") is not None:
            duration = parse_duration(body["duration"])
        if body.get("expires") is not None:
            expires = datetime.fromisoformat(str(body["expires"]).replace("Z", "+00:00"))
            if expires.tzinfo is None:
                expires = expires.replace(tzinfo=UTC)
    except (DurationError, ValueError) as error:
        raise bad_request(f"duration/expires: {error}") from None
    data = body.get("data") or {}
    if not isinstance(data, dict):
        raise bad_request("data: expected an object of meta values")
    try:
        return new_rule(
            action,
            reason=reason,
            now=now,
            duration=duration,
            expires=expires,
            campaign=_optional_string(body, "campaign"),
            tenant=_optional_string(body, "tenant"),
            domain=_optional_string(body, "domain"),
            routing_domain=_optional_string(body, "routing_domain"),
            queues=tuple(queues),
            rebind_meta={k: json.dumps(v) for k, v in data.items()},
            created_by=created_by,
        )
    except AdminRuleError as error:
        raise bad_request(str(error)) from None


class AdminApi:
    """The routes over one running scheduler, reached through `AdminApiPort`."""

    def __init__(
        self,
        scheduler: AdminApiPort,
        settings: Settings,
        *,
        started_at: datetime | None = None,
    ) -> None:
        self._scheduler = scheduler
        own = settings.scheduling
        auth = AdminAuth(
            own.admin_api_tokens, own.admin_api_basic_users, own.admin_api_trusted_hosts
        )
        self.app = web.Application(middlewares=[auth.middleware()])
        router = self.app.router
        for action, path in _PATHS.items():
            router.add_post(path, self._creator(action))
            router.add_get(path, self._lister(action))
            router.add_delete(path, self._canceller(action))
        AdminInspection(scheduler, settings).add_routes(router)
        AdminSystem(scheduler, settings, started_at or datetime.now(UTC)).add_routes(router)
        router.add_get(OPENAPI_PATH, self.openapi)

    async def openapi(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text=openapi_text(), content_type="application/json")

    # --- rules -------------------------------------------------------------------------

    def _creator(self, action: AdminAction) -> Handler:
        async def create(request: web.Request) -> web.StreamResponse:
            body = await json_object(request, _FIELDS[action])
            remote = request.remote or "?"
            rule = rule_from_request(action, body, datetime.now(UTC), f"admin-api@{remote}")
            scheduler = self._scheduler
            await publish_rule(scheduler.producer, scheduler.topics.admin.name, rule)
            log.info("admin rule published", extra={"id": rule.id, "action": action.value})
            answer: dict[str, Any] = {"id": rule.id}
            if action is AdminAction.BOUNCE:
                # As KumoMTA now: bounces are asynchronous (here on every instance), so the
                # counts are reported by the list, not here.
                answer.update(bounced={}, total_bounced=0)
            return web.json_response(answer)

        return create

    def _lister(self, action: AdminAction) -> Handler:
        count_key = {AdminAction.BOUNCE: "bounced", AdminAction.REBIND: "rebound"}.get(action)

        async def list_rules(request: web.Request) -> web.StreamResponse:
            scheduler = self._scheduler
            now = scheduler.now_ms()
            counts = scheduler.rule_counts
            counts.keep_only({r.id for r in scheduler.rules.all()})
            entries = []
            for rule in scheduler.rules.active(now, action):
                if action is AdminAction.SUSPEND_READY_Q:
                    entries.append(ready_q_suspension_json(rule, now))
                    continue
                entry = rule_json(rule, now)
                if count_key is not None:
                    entry[count_key] = counts.of(rule.id)
                    entry[f"total_{count_key}"] = counts.total(rule.id)
                    entry["pending"] = self._pending(rule)
                entries.append(entry)
            return web.json_response(entries)

        return list_rules

    def _pending(self, rule: AdminRule) -> int:
        """Messages held here that `rule` has yet to act on: in a queue it matches, waiting
        or in flight (being bounced or moved, or released to delivery and not yet back); a
        rebind's, received before it. What progress is measured against: 0 once a bulk
        bounce or rebind is done on this instance."""
        messages = self._scheduler.messages
        counts = messages.queue_counts()
        queues = {q for q in counts if rule.matches(q)}
        if rule.action is AdminAction.BOUNCE:
            return sum(counts[q].waiting + counts[q].in_flight for q in queues)
        return sum(
            1
            for e in messages.entries()
            if e.queue in queues and rule_applies_to_rebind(rule, e.created_at)
        )

    def _canceller(self, action: AdminAction) -> Handler:
        async def cancel(request: web.Request) -> web.StreamResponse:
            body = await json_object(request, ("id",))
            rule_id = body.get("id")
            if not isinstance(rule_id, str):
                raise bad_request("id: required")
            rule = self._scheduler.rules.get(rule_id)
            if rule is None or rule.action is not action:
                raise web.HTTPNotFound(text=f"{action.value.lower()} entry {rule_id} not found")
            scheduler = self._scheduler
            await cancel_rule(scheduler.producer, scheduler.topics.admin.name, rule_id)
            return web.Response(text=f"removed {rule_id}")

        return cancel


def openapi_text() -> str:
    return resources.files(__package__).joinpath(OPENAPI_RESOURCE).read_text()


async def start_admin_api(
    scheduler: AdminApiPort,
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
) -> web.AppRunner:
    """Serves the API (on the settings' address, unless given); `await runner.cleanup()`
    stops it."""
    own = settings.scheduling
    host = own.admin_api_bind if host is None else host
    port = own.admin_api_port if port is None else port
    runner = web.AppRunner(AdminApi(scheduler, settings).app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info(
        "admin API listening",
        extra={
            "host": host,
            "port": port,
            "tokens": len(own.admin_api_tokens),
            "basic_users": len(own.admin_api_basic_users),
            "trusted_hosts": [str(n) for n in own.admin_api_trusted_hosts],
        },
    )
    return runner
