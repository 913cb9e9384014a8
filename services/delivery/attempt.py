"""One delivery attempt: plan the destination, send over a pooled session, classify the reply.

`Deliverer.deliver(request)` never raises for anything the outside world did (DNS, peers,
a bad queue config): every such case is an `AttemptResult` with the response KumoMTA would
log. `outcome_event` and `log_event` turn a result into the DeliveryOutcome and LogRecord.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from ..core.dns.resolver import MxResolver
from ..core.domain.admin_rules import AdminAction, AdminRuleSet, ready_queue_suspended_response
from ..core.domain.egress_source import UNSPECIFIED, EgressSource
from ..core.domain.log_record import LogRecord, PeerAddress, RecordType, SourceAddress
from ..core.domain.log_writer import ANONYMOUS, LogWriter
from ..core.domain.queue_config import QueueConfig, QueueConfigError
from ..core.domain.queue_name import ready_queue_name
from ..core.domain.smtp_reply import ReplyKind, SmtpResponse, classify_reply
from ..core.events import records
from ..core.events.records import DeliveryOutcome, DeliveryRequest, OutcomeKind
from ..core.policy import Policy
from ..core.runtime.settings import DeliverySettings
from . import metrics
from .egress import EgressDefaults, EgressPath, EgressResolver, EgressUnavailable
from .planning import (
    DeliveryPlan,
    DestinationPlanner,
    ResolvedDestination,
    Undeliverable,
    destinations_for,
)
from .pool import AllCandidatesFailed, PoolKey, PoolRegistry, ReadyQueueSuspended
from .smtp_session import Destination, PeerReply, SessionFacts

DELIVERY_PROTOCOL = "ESMTP"

_OUTCOME_KIND: dict[ReplyKind, OutcomeKind] = {
    ReplyKind.DELIVERY: "DELIVERED",
    ReplyKind.TRANSIENT_FAILURE: "TRANSIENT_FAILURE",
    ReplyKind.BOUNCE: "BOUNCE",
}
_RECORD_TYPE: dict[OutcomeKind, RecordType] = {
    "DELIVERED": RecordType.DELIVERY,
    "TRANSIENT_FAILURE": RecordType.TRANSIENT_FAILURE,
    "BOUNCE": RecordType.BOUNCE,
}


@dataclass(frozen=True)
class AttemptResult:
    kind: OutcomeKind
    response: SmtpResponse
    site: str
    peer: Destination | None
    egress_pool: str | None
    egress_source: str | None
    # The SMTP session the reply came over; None when none was opened.
    session: SessionFacts | None = None

    @property
    def metric_label(self) -> str:
        return self.kind.lower()


def response_from_peer(reply: PeerReply) -> SmtpResponse:
    """The peer's reply as the domain type: enhanced code split off as KumoMTA does."""
    lines = reply.text.split("\n") or [""]
    wire = [f"{reply.code}-{line}" for line in lines[:-1]] + [f"{reply.code} {lines[-1]}"]
    return SmtpResponse.from_lines(wire, reply.command)


def connect_failure_response(failed: AllCandidatesFailed) -> SmtpResponse:
    """KumoMTA's transient `400` when no candidate address gave a session."""
    return SmtpResponse.with_code(400, None, f"failed to connect to any candidate hosts: {failed}")


@dataclass(frozen=True)
class Planned:
    """A request with its egress source and destination, ready to send (`Deliverer.send`)."""

    request: DeliveryRequest
    pool_name: str
    source: EgressSource
    destination: ResolvedDestination

    @property
    def site(self) -> str:
        return self.destination.site


class Deliverer:
    """Delivers DeliveryRequests; owns the planner, the egress resolver and the pools."""

    def __init__(
        self,
        planner: DestinationPlanner,
        pools: PoolRegistry,
        egress: EgressResolver,
        suspensions: AdminRuleSet | None = None,
    ) -> None:
        self.planner = planner
        self.pools = pools
        self.egress = egress
        # The operator's rules (the admin topic's, service.py follows it): the pools'
        # suspension check reads suspend-ready-q here (`from_settings` wires the two).
        self.suspensions = AdminRuleSet() if suspensions is None else suspensions

    @classmethod
    def from_settings(
        cls, settings: DeliverySettings, resolver: MxResolver, policy: Policy | None = None
    ) -> Deliverer:
        defaults = EgressDefaults.from_settings(settings)
        path = EgressPath.derive(defaults.source, defaults.path, defaults)
        suspensions = AdminRuleSet()
        return cls(
            DestinationPlanner(
                resolver,
                default_port=settings.smtp_port,
                allow_prohibited=settings.allow_loopback,
            ),
            PoolRegistry(
                path.limits,
                path.options,
                on_created=metrics.pool_created,
                on_forgotten=metrics.pool_forgotten,
                suspension=functools.partial(ready_queue_suspension, suspensions),
            ),
            EgressResolver(policy, defaults),
            suspensions,
        )

    async def aclose(self) -> None:
        await self.pools.aclose()

    async def deliver(self, request: DeliveryRequest) -> AttemptResult:
        """Plan and send one request (`plan`, then `send`)."""
        started = time.monotonic()
        planned = await self.plan(request)
        return await self.send(planned, started)

    async def send(self, planned: Planned | AttemptResult, started: float) -> AttemptResult:
        """Send a planned request (a result already known is only counted)."""
        result = planned if isinstance(planned, AttemptResult) else await self._finish(planned)
        ready_queue = (
            ready_queue_name(result.egress_source, result.site)
            if result.egress_source and result.site
            else None
        )
        metrics.note_attempt(result.kind, ready_queue)
        metrics.DELIVERY_SECONDS.labels(result.metric_label).observe(time.monotonic() - started)
        return result

    async def plan(self, request: DeliveryRequest) -> Planned | AttemptResult:
        """The egress source and destination site of a request, or why it goes nowhere now."""
        try:
            config = QueueConfig.from_json(request["queue_config"])
        except QueueConfigError as error:
            # An operator's mistake, fixable: keep the message and retry, as KumoMTA does when
            # get_queue_config fails.
            response = SmtpResponse.with_code(451, (4, 3, 5), f"invalid queue config: {error}")
            return AttemptResult("TRANSIENT_FAILURE", response, "", None, None, None)
        pool_name = config.egress_pool or UNSPECIFIED
        try:
            choice = self.egress.choose_source(config.egress_pool)
        except EgressUnavailable as unavailable:
            return AttemptResult(
                "TRANSIENT_FAILURE", unavailable.response, "", None, pool_name, None
            )
        source = choice.source
        resolved = await self.planner.resolve(request["queue"], config)
        if isinstance(resolved, Undeliverable):
            kind: OutcomeKind = "BOUNCE" if resolved.permanent else "TRANSIENT_FAILURE"
            return AttemptResult(
                kind, resolved.response, resolved.site, None, pool_name, source.name
            )
        return Planned(request, pool_name, source, resolved)

    async def _finish(self, planned: Planned) -> AttemptResult:
        request, pool_name, source, resolved = (
            planned.request,
            planned.pool_name,
            planned.source,
            planned.destination,
        )
        try:
            path = self.egress.path(resolved.routing_target, source, resolved.site)
        except EgressUnavailable as unavailable:
            # Never a default path: smarthosted mail must not leak to the public MX.
            return AttemptResult(
                "TRANSIENT_FAILURE",
                unavailable.response,
                resolved.site,
                None,
                pool_name,
                source.name,
            )
        ordered = await self.planner.candidates(resolved.mx_plan, path.config.ip_lookup_strategy)
        plan = destinations_for(resolved.mx_plan, ordered, path.rules)
        if isinstance(plan, Undeliverable):
            kind: OutcomeKind = "BOUNCE" if plan.permanent else "TRANSIENT_FAILURE"
            return AttemptResult(kind, plan.response, plan.site, None, pool_name, source.name)
        return await self._send(request, plan, pool_name, path)

    async def _send(
        self, request: DeliveryRequest, plan: DeliveryPlan, pool_name: str, path: EgressPath
    ) -> AttemptResult:
        source = path.source.name
        pool = self.pools.pool(PoolKey(source, plan.site), path.limits, path.options)
        try:
            sent = await pool.send(
                plan.candidates, request["sender"], request["recipient"], request["content"]
            )
        except ReadyQueueSuspended as suspended:
            # No connection, no idle session used: scheduling retries it after the rule.
            return AttemptResult(
                "TRANSIENT_FAILURE",
                ready_queue_suspended_response(suspended.reason),
                plan.site,
                None,
                pool_name,
                source,
            )
        except AllCandidatesFailed as failed:
            metrics.CONNECT_FAILURES.inc(len(failed.failures))
            metrics.note_tls_failures(
                pool.key.ready_queue, sum(1 for failure in failed.failures if failure.tls)
            )
            return AttemptResult(
                "TRANSIENT_FAILURE",
                connect_failure_response(failed),
                plan.site,
                None,
                pool_name,
                source,
            )
        if sent.new_connection:
            metrics.note_new_connection(pool.key.ready_queue, sent.tls)
        response = response_from_peer(sent.reply)
        kind = _OUTCOME_KIND[classify_reply(response).kind]
        return AttemptResult(
            kind, response, plan.site, sent.destination, pool_name, source, sent.session
        )


def ready_queue_suspension(rules: AdminRuleSet, ready_queue: str) -> str | None:
    """The reason `ready_queue` is suspended now (a suspend-ready-q rule), or None."""
    rule = rules.matching(AdminAction.SUSPEND_READY_Q, ready_queue, int(time.time() * 1000))
    return None if rule is None else rule.reason


def _now() -> datetime:
    return datetime.now(UTC)


def outcome_event(request: DeliveryRequest, result: AttemptResult) -> DeliveryOutcome:
    return {
        "id": request["id"],
        "queue": request["queue"],
        "attempt": request["attempt"],
        "kind": result.kind,
        "response": _response_record(result.response),
        "site": result.site,
        "peer_name": None if result.peer is None else result.peer.peer_name,
        "peer_address": None if result.peer is None else result.peer.address,
        "egress_pool": result.egress_pool,
        "egress_source": result.egress_source,
        "completed_at": _now(),
    }


def log_event(
    request: DeliveryRequest, result: AttemptResult, log_writer: LogWriter = ANONYMOUS
) -> records.LogRecord:
    peer = None
    if result.peer is not None:
        peer = PeerAddress(name=result.peer.peer_name, addr=result.peer.address)
    session = result.session
    record = LogRecord(
        type=_RECORD_TYPE[result.kind],
        id=request["id"],
        sender=request["sender"],
        recipients=(request["recipient"],),
        queue=request["queue"],
        response=result.response,
        timestamp=_now(),
        created=request["created_at"],
        site=result.site,
        size=len(request["content"]),
        peer_address=peer,
        # As KumoMTA: attempts made before this one (the count goes up when it is requeued).
        num_attempts=request["attempt"],
        egress_pool=result.egress_pool,
        egress_source=result.egress_source,
        delivery_protocol=DELIVERY_PROTOCOL,
        reception_protocol=_reception_protocol(request["meta"]),
        meta=dict(request["meta"]),
        session_id=None if session is None else session.session_id,
        source_address=None
        if session is None or session.source_address is None
        else SourceAddress(session.source_address),
        tls=None if session is None else session.tls,
    )
    return cast(records.LogRecord, log_writer.stamp(record).to_avro())


def _reception_protocol(meta: dict[str, str]) -> str | None:
    text = meta.get("reception_protocol")
    if text is None:
        return None
    try:
        value: Any = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def _response_record(response: SmtpResponse) -> records.SmtpResponse:
    return cast(records.SmtpResponse, response.to_dict())
