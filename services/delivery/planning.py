"""Where a DeliveryRequest goes: its site and the addresses to try, in order (ROUTING.md 4, 5, 7).

1. The queue config's mx_list, if any: entries strictly in the configured order, no shuffle;
   name entries resolved for A/AAAA only (never MX); literals, bare IPs and `{name, addr}`
   tables used without DNS (a table's `name` is the peer name for logs and TLS).
2. Else the queue name's routing target (routing_domain if set, else the domain; for a queue
   rewritten with meta `queue`, its domain part): a domain literal is delivered to directly
   with no DNS; a DNS name gets MX resolution, addresses shuffled within one preference.

The decisions (site names, ordering, null MX, prohibited destinations, the failure replies)
are in core/domain/mx_plan.py; this module does the lookups and turns the result into SMTP
destinations or an `Undeliverable` verdict.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..core.domain.mx_plan import (
    MxAnswer,
    MxLookupFailed,
    MxPlan,
    ResolvedAddress,
    connection_order,
    no_addresses_response,
    null_mx_response,
    plan_for_literal,
    plan_for_mx_list,
    plan_from_mx_answer,
    prohibited_response,
)
from ..core.domain.queue_config import MxListName, QueueConfig
from ..core.domain.queue_name import QueueName
from ..core.domain.routing_target import (
    RoutingTarget,
    RoutingTargetError,
    ip_text,
    parse_ip,
    split_colon_port,
)
from ..core.domain.smtp_reply import SmtpResponse
from .smtp_session import Destination


class Resolver(Protocol):
    """The DNS lookups planning needs (core/dns's MxResolver through an adapter)."""

    async def mx(self, domain: str) -> MxAnswer: ...

    async def addresses(self, host: str) -> Sequence[str]:
        """A and AAAA answers of `host` as IP texts; empty when it has none or fails."""
        ...


@dataclass(frozen=True)
class DeliveryPlan:
    """Connect to `candidates` in order; pool connections under `site`."""

    site: str
    candidates: tuple[Destination, ...]


@dataclass(frozen=True)
class Undeliverable:
    """No connection can be tried: now (transient) or ever (permanent, a bounce)."""

    response: SmtpResponse
    site: str
    permanent: bool


class DestinationPlanner:
    def __init__(
        self,
        resolver: Resolver,
        *,
        default_port: int = 25,
        allow_prohibited: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        self._resolver = resolver
        self._default_port = default_port
        self._allow_prohibited = allow_prohibited
        self._rng = rng or random.Random()

    async def plan(self, queue: str, config: QueueConfig) -> DeliveryPlan | Undeliverable:
        target_text = QueueName.parse(queue).effective_domain
        if config.mx_list is not None:
            mx_plan = plan_for_mx_list(target_text, config)
            names = [e.host for e in config.mx_list if isinstance(e, MxListName) and e.ip is None]
        else:
            try:
                target = RoutingTarget.classify(target_text)
            except RoutingTargetError as error:
                # A policy's mistake (a bad routing_domain): fixable, so retried, not bounced.
                response = SmtpResponse.with_code(451, (4, 3, 5), f"invalid destination: {error}")
                return Undeliverable(response, target_text, permanent=False)
            if target.is_literal:
                mx_plan = plan_for_literal(target)
                names = []
            else:
                try:
                    mx_plan = plan_from_mx_answer(target, await self._resolver.mx(target.host))
                except MxLookupFailed as failed:
                    return Undeliverable(failed.response, failed.site_name, permanent=False)
                if mx_plan.is_null_mx:
                    return Undeliverable(null_mx_response(), mx_plan.site_name, permanent=True)
                names = list(_hosts_to_resolve(mx_plan))
        addresses = await self._resolve_all(names)
        ordered = connection_order(mx_plan, addresses, self._rng)
        return self._destinations(mx_plan, ordered)

    def _destinations(
        self, mx_plan: MxPlan, ordered: Sequence[ResolvedAddress]
    ) -> DeliveryPlan | Undeliverable:
        if not ordered:
            return Undeliverable(no_addresses_response(), mx_plan.site_name, permanent=False)
        prohibited = prohibited_response(ordered, allow_prohibited=self._allow_prohibited)
        if prohibited is not None:
            return Undeliverable(prohibited, mx_plan.site_name, permanent=True)
        candidates = tuple(
            Destination(
                peer_name=address.name,
                address=ip_text(address.ip),
                port=address.port if address.port is not None else self._default_port,
            )
            for address in ordered
        )
        return DeliveryPlan(mx_plan.site_name, candidates)

    async def _resolve_all(self, names: Iterable[str]) -> dict[str, Sequence[str]]:
        unique = list(dict.fromkeys(names))
        answers = await asyncio.gather(*(self._resolver.addresses(name) for name in unique))
        return dict(zip(unique, answers, strict=True))


def _hosts_to_resolve(mx_plan: MxPlan) -> Iterable[str]:
    """The MX hosts that need an A/AAAA lookup (without a routing `:port`; not IPs)."""
    for host_text in mx_plan.hosts:
        host = split_colon_port(host_text)[0] if mx_plan.port is not None else host_text
        if parse_ip(host) is None:
            yield host
