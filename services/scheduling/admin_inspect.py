"""The admin API's inspection routes: what this instance holds, in KumoMTA's bodies.

relaystream has no ready queues yet (delivery connects per egress source and site, and the
scheduler does not know the site). Until it does, the "ready" routes describe the stage after
a scheduled queue: its messages due or released to delivery and awaiting an outcome, named
by the scheduled queue. The README's admin API table says field by field what is reported.
"""

from __future__ import annotations

import json
import random
from datetime import timedelta
from typing import Any

from aiohttp import web

from ..core.dns.resolver import MxResolver
from ..core.domain.admin_rules import AdminAction
from ..core.domain.durations import format_duration
from ..core.domain.mx_plan import MxLookupFailed, MxPlan
from ..core.domain.queue_config import QueueConfig
from ..core.domain.queue_name import READY_QUEUE_PROTOCOL, ready_queue_name
from ..core.domain.routing_target import RoutingTargetError
from ..core.events.codec import decode
from ..core.runtime.settings import Settings
from .admin_http import bad_request, check_query, flag, iso, rule_json
from .config_resolver import QueueConfigResolver, QueueConfigUnavailable
from .ports import AdminApiPort

# KumoMTA's default egress source and pool name.
UNSPECIFIED = "unspecified"


def mx_json(plan: MxPlan) -> dict[str, Any]:
    return {
        "site_name": plan.site_name,
        "by_preference": {str(pref): list(hosts) for pref, hosts in plan.by_preference},
        "is_mx": plan.is_mx,
        "is_domain_literal": plan.is_domain_literal,
        "is_secure": False,  # the resolver does not validate DNSSEC
    }


def held_config(configs: QueueConfigResolver, queue: str) -> QueueConfig:
    """The queue's config; 503 naming the failure while its get_queue_config fails (its
    messages are held)."""
    try:
        return configs.resolve(queue)
    except QueueConfigUnavailable as held:
        raise web.HTTPServiceUnavailable(
            text=f"{held}: its messages are held until the policy answers"
        ) from None


class AdminInspection:
    def __init__(self, scheduler: AdminApiPort, settings: Settings) -> None:
        self._scheduler = scheduler
        self._settings = settings
        self._resolver: MxResolver | None = None

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/admin/inspect-sched-q/v1", self.inspect_sched_q)
        router.add_get("/api/admin/inspect-message/v1", self.inspect_message)
        router.add_get("/api/admin/inspect-ready-q/v1", self.inspect_ready_q)
        router.add_get("/api/admin/ready-q-states/v1", self.ready_q_states)
        router.add_get("/api/admin/resolve-egress-path/v1", self.resolve_egress_path)

    # --- scheduled queues and messages -------------------------------------------------

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
            "due": iso(entry.due_at),
            "num_attempts": entry.attempts,
            "queue": entry.queue,
            "created": iso(entry.created_at),
            "in_flight": scheduler.messages.in_flight(message_id) is not None,
            "last_response": None if last is None else dict(last),
            "scheduling": {},
        }
        if want_body:
            body["data"] = message["content"].decode("utf-8", "replace")
        return {"id": message_id, "message": body}

    async def inspect_message(self, request: web.Request) -> web.StreamResponse:
        check_query(request, ("id", "want_body"))
        message_id = request.query.get("id")
        if not message_id:
            raise bad_request("id: required")
        found = await self._message_json(message_id, flag(request, "want_body"))
        if found is None:
            raise web.HTTPNotFound(text=f"message {message_id} is not queued on this instance")
        return web.json_response(found)

    async def inspect_sched_q(self, request: web.Request) -> web.StreamResponse:
        check_query(request, ("queue_name", "want_body", "limit", "want_messages"))
        queue = request.query.get("queue_name")
        if not queue:
            raise bad_request("queue_name: required")
        limit_text = request.query.get("limit")
        try:
            limit = None if limit_text is None else int(limit_text)
        except ValueError:
            raise bad_request("limit: expected an integer") from None
        if limit is not None and limit < 0:
            raise bad_request("limit: expected an integer >= 0")
        scheduler = self._scheduler
        now = scheduler.now_ms()
        entries = scheduler.messages.entries_of(queue)
        messages = []
        want_body = flag(request, "want_body")
        if flag(request, "want_messages", default=True):
            for entry in entries if limit is None else entries[:limit]:
                found = await self._message_json(entry.id, want_body)
                if found is not None:
                    messages.append(found)
        suspension = scheduler.rules.matching(AdminAction.SUSPEND, queue, now)
        bounce = scheduler.rules.matching(AdminAction.BOUNCE, queue, now)
        return web.json_response(
            {
                "queue_name": queue,
                "queue_config": json.loads(held_config(scheduler.configs, queue).to_json()),
                "num_scheduled": len(entries),
                "delayed_metric": sum(1 for e in entries if e.due_at > now),
                "now": iso(now),
                "last_changed": iso(now),
                "suspended": None if suspension is None else rule_json(suspension, now),
                "bounced": None if bounce is None else rule_json(bounce, now),
                "messages": messages,
            }
        )

    # --- the "ready" stage ---------------------------------------------------------------

    def _path_config(self) -> dict[str, Any]:
        delivery = self._settings.delivery
        return {
            "connection_limit": delivery.connection_limit,
            "max_deliveries_per_connection": delivery.max_deliveries_per_connection,
            "smtp_port": delivery.smtp_port,
        }

    def _constraints(self, config: QueueConfig) -> dict[str, Any]:
        limit = self._settings.delivery.connection_limit
        rate = config.max_message_rate
        return {
            "max_concurrent_dispatchers": {
                "value": float(limit),
                "source": {"kind": "primary"},
                "display": str(limit),
            },
            "max_connection_rate": None,
            "max_message_rate": None
            if rate is None
            else {
                "value": rate.per_second,
                "source": {"kind": "other", "name": "scheduled queue max_message_rate"},
                "display": str(rate),
            },
            "max_source_selection_rate": None,
        }

    def _suspension_state(self, queue: str, now: int) -> dict[str, Any] | None:
        rule = self._scheduler.rules.matching(AdminAction.SUSPEND, queue, now)
        if rule is None:
            return None
        return {"context": f"suspended: {rule.reason}", "since": iso(rule.created_at)}

    async def inspect_ready_q(self, request: web.Request) -> web.StreamResponse:
        check_query(request, ("queue_name", "include_scheduled_queues"))
        queue = request.query.get("queue_name")
        if not queue:
            raise bad_request("queue_name: required")
        include = flag(request, "include_scheduled_queues")
        scheduler = self._scheduler
        counts = scheduler.messages.queue_counts().get(queue)
        if counts is None:
            raise web.HTTPNotFound(
                text=f"no such ready queue: {queue} (relaystream names the ready stage by its "
                "scheduled queue, and this instance holds no message of it)"
            )
        now = scheduler.now_ms()
        due = sum(
            1
            for e in scheduler.messages.entries_of(queue)
            if e.due_at <= now and scheduler.messages.in_flight(e.id) is None
        )
        config = held_config(scheduler.configs, queue)
        lease = timedelta(seconds=self._settings.scheduling.in_flight_lease_seconds)
        return web.json_response(
            {
                "queue_name": queue,
                "egress_source": UNSPECIFIED,
                "egress_pool": config.egress_pool or UNSPECIFIED,
                "protocol": READY_QUEUE_PROTOCOL,
                "state": {
                    "ready_count": due + counts.in_flight,
                    "in_flight_count": counts.in_flight,
                    # Connections are delivery's: scheduling does not see them.
                    "connection_count": None,
                    "connection_limited": None,
                    "connection_rate_throttled": None,
                    "suspended": None,
                    "watchdog_threshold": format_duration(lease),
                },
                "path_config": self._path_config(),
                "constraints": self._constraints(config),
                "dispatchers": [],
                "mx": None,
                "now": iso(now),
                "scheduled_queue_names": [queue] if include else None,
            }
        )

    async def ready_q_states(self, request: web.Request) -> web.StreamResponse:
        check_query(request, ("queues",))
        wanted = {q for v in request.query.getall("queues", []) for q in v.split(",") if q}
        scheduler = self._scheduler
        now = scheduler.now_ms()
        states: dict[str, dict[str, Any]] = {}
        for queue in sorted(scheduler.messages.queue_counts()):
            if wanted and queue not in wanted:
                continue
            suspended = self._suspension_state(queue, now)
            if suspended is not None:
                states[queue] = {"suspended": suspended}
        return web.json_response({"states_by_ready_queue": states})

    async def resolve_egress_path(self, request: web.Request) -> web.StreamResponse:
        check_query(request, ("domain", "source"))
        domain = request.query.get("domain")
        if not domain:
            raise bad_request("domain: required")
        source = request.query.get("source") or UNSPECIFIED
        if source != UNSPECIFIED:
            raise bad_request(f"source: relaystream has one egress source, {UNSPECIFIED!r}")
        config = held_config(self._scheduler.configs, domain)
        if self._resolver is None:
            servers = self._settings.delivery.nameservers
            self._resolver = MxResolver([(s.host, s.port) for s in servers] or None)
        mx: dict[str, Any] | None
        try:
            plan = await self._resolver.plan_destination(domain, config)
            site = plan.site_name
            await self._resolver.connection_candidates(plan, random.Random(0))
            mx = mx_json(plan)
        except RoutingTargetError as error:
            raise bad_request(f"domain: {error}") from None
        except MxLookupFailed as error:
            site, mx = error.site_name, None
        return web.json_response(
            {
                "domain": domain,
                "source": source,
                "queue_name": ready_queue_name(source, site),
                "queue_config": json.loads(config.to_json()),
                "path_config": self._path_config(),
                "constraints": self._constraints(config),
                "mx": mx,
            }
        )
