"""The admin API's inspection routes: what this instance holds, in KumoMTA's bodies.

The ready queues are delivery's connection pools, one per (egress source, site), in whichever
delivery process holds them: the "ready" routes answer from the `ready-queues` topic, where
every delivery process publishes its pools' states (core/kafka/ready_queue_states.py). The
README's admin API table says field by field what is reported.
"""

from __future__ import annotations

import json
import random
from datetime import timedelta
from typing import Any

from aiohttp import web

from ..core.dns.resolver import MxResolver
from ..core.domain.admin_rules import AdminAction
from ..core.domain.durations import format_duration, iso_from_millis
from ..core.domain.mx_plan import MxLookupFailed, MxPlan
from ..core.domain.queue_config import QueueConfig
from ..core.domain.queue_name import READY_QUEUE_PROTOCOL, ready_queue_name
from ..core.domain.routing_target import RoutingTargetError
from ..core.events.codec import decode
from ..core.events.records import ReadyQueueState
from ..core.kafka.ready_queue_states import (
    CONNECTION_LIMITED,
    CONNECTION_RATE_THROTTLED,
    MESSAGE_RATE_THROTTLED,
    SUSPENDED,
)
from ..core.runtime.settings import Settings
from .admin_http import bad_request, check_query, flag, ready_q_suspension_json, rule_json
from .config_resolver import QueueConfigResolver, QueueConfigUnavailable
from .ports import AdminApiPort

# KumoMTA's default egress source and pool name.
UNSPECIFIED = "unspecified"
_STATE_CONTEXTS = {
    CONNECTION_LIMITED: "connection_limit reached: deliveries wait for a connection",
    CONNECTION_RATE_THROTTLED: "max_connection_rate reached: new connections wait",
    MESSAGE_RATE_THROTTLED: "max_message_rate reached: messages wait",
}


def ready_queue_states_json(state: ReadyQueueState) -> dict[str, dict[str, str]]:
    """The states a published ready queue is in, as KumoMTA's QueueState (context, since);
    the suspension is the admin topic's rule, reported from there."""
    return {
        name: {
            "context": f"{_STATE_CONTEXTS.get(name, name)} (delivery node {state['node']})",
            "since": since.isoformat(),
        }
        for name, since in state["states"].items()
        if name != SUSPENDED
    }


def ready_queue_constraints(path_config: dict[str, Any]) -> dict[str, Any]:
    """KumoMTA's EffectiveConstraints of a ready queue from its published path config."""
    limit = path_config.get("connection_limit")

    def axis(key: str) -> dict[str, Any] | None:
        rate = path_config.get(key)
        if not isinstance(rate, dict):
            return None
        limit, period = rate["limit"], rate["period_seconds"]
        return {
            "value": limit / period,
            "source": {"kind": "primary"},
            "display": f"{limit}/{period:g}s",
        }

    return {
        "max_concurrent_dispatchers": None
        if limit is None
        else {"value": float(limit), "source": {"kind": "primary"}, "display": str(limit)},
        "max_connection_rate": axis("max_connection_rate"),
        "max_message_rate": axis("max_message_rate"),
        "max_source_selection_rate": None,
    }


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
            "due": iso_from_millis(entry.due_at),
            "num_attempts": entry.attempts,
            "queue": entry.queue,
            "created": iso_from_millis(entry.created_at),
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
                "now": iso_from_millis(now),
                "last_changed": iso_from_millis(now),
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
        return {"context": f"suspended: {rule.reason}", "since": iso_from_millis(rule.created_at)}

    def _ready_q_suspension(self, name: str, now: int) -> dict[str, Any] | None:
        rule = self._scheduler.rules.matching(AdminAction.SUSPEND_READY_Q, name, now)
        return None if rule is None else ready_q_suspension_json(rule, now)

    async def inspect_ready_q(self, request: web.Request) -> web.StreamResponse:
        check_query(request, ("queue_name", "include_scheduled_queues"))
        name = request.query.get("queue_name")
        if not name:
            raise bad_request("queue_name: required")
        include = flag(request, "include_scheduled_queues")
        now = self._scheduler.now_ms()
        state = self._scheduler.ready_queues.current(now).get(name)
        if state is None:
            raise web.HTTPNotFound(text=f"no such ready queue: {name} (no delivery instance "
                                   "holds a connection pool for it now)")  # fmt: skip
        states = ready_queue_states_json(state)
        path_config = {k: json.loads(v) for k, v in state["path_config"].items()}
        return web.json_response(
            {
                "queue_name": name,
                "egress_source": state["egress_source"],
                # A source may serve several pools: the ready queue does not name one.
                "egress_pool": UNSPECIFIED,
                "protocol": READY_QUEUE_PROTOCOL,
                "state": {
                    "connection_count": state["connection_count"],
                    "ready_count": state["ready_count"],
                    "connection_limited": states.get(CONNECTION_LIMITED),
                    "connection_rate_throttled": states.get(CONNECTION_RATE_THROTTLED),
                    "suspended": self._ready_q_suspension(name, now),
                    "watchdog_threshold": format_duration(
                        timedelta(seconds=self._settings.scheduling.in_flight_lease_seconds)
                    ),
                },
                "path_config": path_config,
                "constraints": ready_queue_constraints(path_config),
                "dispatchers": [],
                "mx": None,
                "now": iso_from_millis(now),
                "node": state["node"],
                "updated_at": state["updated_at"].isoformat(),
                # Which scheduled queues feed it is not tracked (they meet only at delivery).
                "scheduled_queue_names": [] if include else None,
            }
        )

    async def ready_q_states(self, request: web.Request) -> web.StreamResponse:
        check_query(request, ("queues",))
        wanted = {q for v in request.query.getall("queues", []) for q in v.split(",") if q}
        now = self._scheduler.now_ms()
        answer: dict[str, dict[str, Any]] = {}
        for name, state in self._scheduler.ready_queues.current(now).items():
            if wanted and name not in wanted:
                continue
            states = ready_queue_states_json(state)
            suspension = self._scheduler.rules.matching(AdminAction.SUSPEND_READY_Q, name, now)
            if suspension is not None:
                states[SUSPENDED] = {
                    "context": f"suspended: {suspension.reason}",
                    "since": iso_from_millis(suspension.created_at),
                }
            if states:
                answer[name] = states
        return web.json_response({"states_by_ready_queue": answer})

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
