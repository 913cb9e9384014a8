"""Where a DeliveryRequest goes: its site and the addresses to try, in order (ROUTING.md 4, 5, 7).

1. The queue config's mx_list, if any: entries strictly in the configured order, no shuffle;
   name entries resolved for A/AAAA only (never MX); literals, bare IPs and `{name, addr}`
   tables used without DNS (a table's `name` is the peer name for logs and TLS).
2. Else the queue name's routing target (routing_domain if set, else the domain; for a queue
   rewritten with meta `queue`, its domain part): a domain literal is delivered to directly
   with no DNS; a DNS name gets MX resolution, addresses shuffled within one preference.

The lookups and their caching are core/dns's `MxResolver`; the decisions (site names,
ordering, null MX, prohibited destinations, the failure replies) are core/domain/mx_plan.py.
This module only turns their result into SMTP destinations or an `Undeliverable` verdict,
under the egress path's address rules (`AddressRules`: port, prohibited_hosts, skip_hosts).
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass

from ..core.dns.resolver import MxResolver
from ..core.domain.egress import IpLookupStrategy
from ..core.domain.mx_plan import (
    PROHIBITED_NETWORKS,
    MxLookupFailed,
    MxPlan,
    ResolvedAddress,
    no_addresses_response,
    null_mx_response,
    only_skipped_hosts_response,
    prohibited_response,
)
from ..core.domain.queue_config import QueueConfig
from ..core.domain.queue_name import QueueName
from ..core.domain.routing_target import RoutingTargetError, ip_text
from ..core.domain.smtp_reply import SmtpResponse
from .smtp_session import Destination


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


@dataclass(frozen=True)
class ResolvedDestination:
    """Where a queue's mail goes before the egress path applies: the site and its MX plan
    (the hosts' addresses come with the path's ip_lookup_strategy: `candidates`)."""

    site: str
    mx_plan: MxPlan
    # The queue's routing domain (or domain): what get_egress_path_config is asked about.
    routing_target: str


@dataclass(frozen=True)
class AddressRules:
    """What an egress path says about the addresses: the port where the destination names
    none (smtp_port, or the source's remote_port), the networks never delivered to
    (prohibited_hosts: a bounce) and those left out (skip_hosts)."""

    default_port: int = 25
    prohibited: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = PROHIBITED_NETWORKS
    skip: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = ()
    allow_prohibited: bool = False


class DestinationPlanner:
    """Plans each request's destination through one shared `MxResolver`, so that every
    delivery to a domain within its TTL (or a failure's 5 minutes) reuses the answer."""

    def __init__(
        self,
        resolver: MxResolver,
        *,
        default_port: int = 25,
        allow_prohibited: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        self._resolver = resolver
        self._rules = AddressRules(default_port=default_port, allow_prohibited=allow_prohibited)
        self._rng = rng or random.Random()

    async def plan(self, queue: str, config: QueueConfig) -> DeliveryPlan | Undeliverable:
        """`resolve`, then the destinations under the planner's own address rules."""
        resolved = await self.resolve(queue, config)
        if isinstance(resolved, Undeliverable):
            return resolved
        ordered = await self.candidates(resolved.mx_plan)
        return destinations_for(resolved.mx_plan, ordered, self._rules)

    async def candidates(
        self, mx_plan: MxPlan, strategy: IpLookupStrategy = IpLookupStrategy.IPV4_AND_IPV6
    ) -> list[ResolvedAddress]:
        """The plan's addresses in the order to try them (DNS under `strategy`, cached)."""
        return await self._resolver.connection_candidates(mx_plan, self._rng, strategy)

    async def resolve(self, queue: str, config: QueueConfig) -> ResolvedDestination | Undeliverable:
        """The site and MX plan of a queue's destination (DNS, cached)."""
        routing_target = QueueName.parse(queue).effective_domain
        try:
            mx_plan = await self._resolver.plan_destination(routing_target, config)
        except RoutingTargetError as error:
            # A policy's mistake (a bad routing_domain): fixable, so retried, not bounced.
            response = SmtpResponse.with_code(451, (4, 3, 5), f"invalid destination: {error}")
            return Undeliverable(response, routing_target, permanent=False)
        except MxLookupFailed as failed:
            return Undeliverable(failed.response, failed.site_name, permanent=False)
        if mx_plan.is_null_mx:
            return Undeliverable(null_mx_response(), mx_plan.site_name, permanent=True)
        return ResolvedDestination(mx_plan.site_name, mx_plan, routing_target)


def destinations_for(
    mx_plan: MxPlan, ordered: Sequence[ResolvedAddress], rules: AddressRules
) -> DeliveryPlan | Undeliverable:
    """The SMTP destinations for a plan's ordered addresses: those in `rules.skip` left out
    (transient when that leaves none), transient when there are none, a bounce when one is
    prohibited (unless allowed); `rules.default_port` where none is given."""
    if not ordered:
        return Undeliverable(no_addresses_response(), mx_plan.site_name, permanent=False)
    kept = [a for a in ordered if not any(a.ip in network for network in rules.skip)]
    if not kept:
        return Undeliverable(only_skipped_hosts_response(), mx_plan.site_name, permanent=False)
    prohibited = prohibited_response(
        kept, allow_prohibited=rules.allow_prohibited, networks=rules.prohibited
    )
    if prohibited is not None:
        return Undeliverable(prohibited, mx_plan.site_name, permanent=True)
    candidates = tuple(
        Destination(
            peer_name=address.name,
            address=ip_text(address.ip),
            port=address.port if address.port is not None else rules.default_port,
        )
        for address in kept
    )
    return DeliveryPlan(mx_plan.site_name, candidates)
