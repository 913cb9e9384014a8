"""The admin HTTP API of a scheduling instance (KumoMTA's paths and JSON where they fit).

    POST/GET/DELETE /api/admin/suspend/v1     create / list / cancel suspensions
    POST/GET/DELETE /api/admin/bounce/v1      create / list / cancel bounces
    POST/GET/DELETE /api/admin/rebind/v1      create / list / cancel rebinds
    GET /api/admin/inspect-sched-q/v1?queue_name=Q[&want_body=true][&limit=N][&want_messages=true]
    GET /api/admin/inspect-message/v1?id=ID[&want_body=true]

Every request needs `Authorization: Bearer <token>` with one of the settings' tokens (401
otherwise); without tokens the API only starts on a loopback address and then asks for none.
Rules created here are published on the `admin` topic, so every instance applies them (each to
its own partitions), and the lists show the topic's rules as this instance read them.
Inspection answers from this instance's own state: with several instances, ask each one, or
use `relaystream queues`, which reads the topics.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from ..core.domain.admin_rules import AdminAction, AdminRule, AdminRuleError
from ..core.domain.durations import DurationError, format_duration, parse_duration
from ..core.events.codec import decode
from ..core.kafka.admin_commands import cancel_rule, new_rule, publish_rule
from .ports import AdminApiPort

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_ACTIONS = {
    "suspend": AdminAction.SUSPEND,
    "bounce": AdminAction.BOUNCE,
    "rebind": AdminAction.REBIND,
}


def _iso(millis: int) -> str:
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat().replace("+00:00", "Z")


def _bad_request(text: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=text)


def rule_json(rule: AdminRule, now_ms: int) -> dict[str, Any]:
    """A rule as KumoMTA's list entries show it (`duration` = time left), plus our fields."""
    return {
        "id": rule.id,
        "action": rule.action.value.lower(),
        "campaign": rule.campaign,
        "tenant": rule.tenant,
        "domain": rule.domain,
        "routing_domain": rule.routing_domain,
        "queue_names": list(rule.queues),
        "reason": rule.reason,
        "duration": format_duration(timedelta(milliseconds=rule.remaining_ms(now_ms))),
        "created": _iso(rule.created_at),
        "expires": _iso(rule.expires_at),
        "data": {k: json.loads(v) for k, v in rule.rebind_meta.items()},
        "created_by": rule.created_by,
    }


def _optional_string(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None or (isinstance(value, str) and value):
        return value
    raise _bad_request(f"{key}: expected a non-empty string")


def rule_from_request(action: AdminAction, body: Any, now: datetime, created_by: str) -> AdminRule:
    """A new rule from a KumoMTA-shaped request body; raises HTTPBadRequest when invalid."""
    if not isinstance(body, dict):
        raise _bad_request("expected a JSON object")
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason:
        raise _bad_request("reason: required")
    queues = body.get("queue_names") or []
    if not isinstance(queues, list) or not all(isinstance(q, str) for q in queues):
        raise _bad_request("queue_names: expected a list of queue names")
    duration = None
    expires = None
    try:
        if body.get("duration") is not None:
            duration = parse_duration(body["duration"])
        if body.get("expires") is not None:
            expires = datetime.fromisoformat(str(body["expires"]).replace("Z", "+00:00"))
    except (DurationError, ValueError) as error:
        raise _bad_request(f"duration/expires: {error}") from None
    data = body.get("data") or {}
    if not isinstance(data, dict):
        raise _bad_request("data: expected an object of meta values")
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
        raise _bad_request(str(error)) from None


def bearer_auth(tokens: tuple[str, ...]) -> Any:
    """Middleware: 401 unless the request carries one of `tokens` (none: no check)."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if tokens:
            header = request.headers.get("Authorization", "")
            scheme, _, given = header.partition(" ")
            # compare_digest against each: no early exit that would time the token's prefix.
            valid = scheme.lower() == "bearer" and any(
                hmac.compare_digest(given.strip().encode(), t.encode()) for t in tokens
            )
            if not valid:
                raise web.HTTPUnauthorized(
                    text="a valid bearer token is required",
                    headers={"WWW-Authenticate": 'Bearer realm="relaystream-admin"'},
                )
        return await handler(request)

    return check


class AdminApi:
    """The routes over one running scheduler, reached through `AdminApiPort`."""

    def __init__(self, scheduler: AdminApiPort, tokens: tuple[str, ...]) -> None:
        self._scheduler = scheduler
        self.app = web.Application(middlewares=[bearer_auth(tokens)])
        for path, action in _ACTIONS.items():
            url = f"/api/admin/{path}/v1"
            self.app.router.add_post(url, self._creator(action))
            self.app.router.add_get(url, self._lister(action))
            self.app.router.add_delete(url, self._canceller(action))
        self.app.router.add_get("/api/admin/inspect-sched-q/v1", self.inspect_queue)
        self.app.router.add_get("/api/admin/inspect-message/v1", self.inspect_message)

    # --- rules -------------------------------------------------------------------------

    def _creator(self, action: AdminAction) -> Handler:
        async def create(request: web.Request) -> web.StreamResponse:
            try:
                body = await request.json()
            except json.JSONDecodeError:
                raise _bad_request("expected a JSON body") from None
            remote = request.remote or "?"
            rule = rule_from_request(action, body, datetime.now(UTC), f"admin-api@{remote}")
            scheduler = self._scheduler
            await publish_rule(scheduler.producer, scheduler.topics.admin.name, rule)
            log.info("admin rule published", extra={"id": rule.id, "action": action.value})
            # KumoMTA answers {"id": ...}; bounce also reports counts (applied asynchronously
            # here, on every instance, so none are known yet).
            answer: dict[str, Any] = {"id": rule.id}
            if action is AdminAction.BOUNCE:
                answer.update(bounced={}, total_bounced=0)
            return web.json_response(answer)

        return create

    def _lister(self, action: AdminAction) -> Handler:
        async def list_rules(request: web.Request) -> web.StreamResponse:
            now = self._scheduler.now_ms()
            rules = self._scheduler.rules.active(now, action)
            return web.json_response([rule_json(r, now) for r in rules])

        return list_rules

    def _canceller(self, action: AdminAction) -> Handler:
        async def cancel(request: web.Request) -> web.StreamResponse:
            try:
                body = await request.json()
            except json.JSONDecodeError:
                raise _bad_request("expected a JSON body with the id") from None
            rule_id = body.get("id") if isinstance(body, dict) else None
            if not isinstance(rule_id, str):
                raise _bad_request("id: required")
            rule = self._scheduler.rules.get(rule_id)
            if rule is None or rule.action is not action:
                raise web.HTTPNotFound(text=f"{action.value.lower()} entry {rule_id} not found")
            scheduler = self._scheduler
            await cancel_rule(scheduler.producer, scheduler.topics.admin.name, rule_id)
            return web.Response(text=f"removed {rule_id}")

        return cancel

    # --- inspection --------------------------------------------------------------------

    async def _message_json(self, message_id: str, want_body: bool) -> dict[str, Any] | None:
        scheduler = self._scheduler
        entry = scheduler.messages.entry(message_id)
        if entry is None:
            return None
        records = await scheduler.spool.fetch([(entry.partition, entry.offset)])
        record = records.get((entry.partition, entry.offset))
        if record is None or record.value is None:
            return None
        _, message = decode(record.value, "QueuedMessage")
        last = message["last_response"]
        body: dict[str, Any] = {
            "sender": message["sender"],
            "recipient": message["recipient"],
            "meta": {k: json.loads(v) for k, v in message["meta"].items()},
            "due": _iso(entry.due_at),
            "num_attempts": entry.attempts,
            "queue": entry.queue,
            "created": _iso(entry.created_at),
            "in_flight": scheduler.messages.in_flight(message_id) is not None,
            "last_response": None if last is None else dict(last),
            "scheduling": {},
        }
        if want_body:
            body["data"] = message["content"].decode("utf-8", "replace")
        return {"id": message_id, "message": body}

    async def inspect_message(self, request: web.Request) -> web.StreamResponse:
        message_id = request.query.get("id")
        if not message_id:
            raise _bad_request("id: required")
        found = await self._message_json(message_id, _flag(request, "want_body"))
        if found is None:
            raise web.HTTPNotFound(text=f"message {message_id} is not queued on this instance")
        return web.json_response(found)

    async def inspect_queue(self, request: web.Request) -> web.StreamResponse:
        queue = request.query.get("queue_name")
        if not queue:
            raise _bad_request("queue_name: required")
        limit_text = request.query.get("limit")
        try:
            limit = None if limit_text is None else max(0, int(limit_text))
        except ValueError:
            raise _bad_request("limit: expected an integer") from None
        scheduler = self._scheduler
        now = scheduler.now_ms()
        entries = scheduler.messages.entries_of(queue)
        messages = []
        want_messages = _flag(request, "want_messages", default=True)
        if want_messages:
            for entry in entries if limit is None else entries[:limit]:
                found = await self._message_json(entry.id, _flag(request, "want_body"))
                if found is not None:
                    messages.append(found)
        suspension = scheduler.rules.matching(AdminAction.SUSPEND, queue, now)
        bounce = scheduler.rules.matching(AdminAction.BOUNCE, queue, now)
        return web.json_response(
            {
                "queue_name": queue,
                "queue_config": json.loads(scheduler.configs.resolve(queue).to_json()),
                "num_scheduled": len(entries),
                "delayed_metric": sum(1 for e in entries if e.due_at > now),
                "now": _iso(now),
                "last_changed": _iso(now),
                "suspended": None if suspension is None else rule_json(suspension, now),
                "bounced": None if bounce is None else rule_json(bounce, now),
                "messages": messages,
            }
        )


def _flag(request: web.Request, name: str, *, default: bool = False) -> bool:
    value = request.query.get(name)
    if value is None:
        return default
    return value.lower() in ("1", "true", "yes", "on")


async def start_admin_api(
    scheduler: AdminApiPort, host: str, port: int, tokens: tuple[str, ...]
) -> web.AppRunner:
    """Serves the API on host:port; `await runner.cleanup()` stops it."""
    runner = web.AppRunner(AdminApi(scheduler, tokens).app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("admin API listening", extra={"host": host, "port": port, "auth": bool(tokens)})
    return runner
