"""MX and address resolution with dnspython's asyncio resolver.

Lookups are turned into the plain data of `core.domain.mx_plan` (no dnspython types leave
this module) and cached: positive answers for their TTL, negative ones (NXDOMAIN, NODATA,
SERVFAIL, timeouts) for five minutes, as KumoMTA does. The clock is injectable for tests.

Host names resolve to addresses under an egress path's `ip_lookup_strategy` (KumoMTA's):
A and AAAA together (the default), one family only, or one family and the other only when the
first has no address or fails.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

from ..domain.egress import IpLookupStrategy
from ..domain.mx_plan import (
    MxAnswer,
    MxAnswerKind,
    MxPlan,
    MxRecord,
    ResolvedAddress,
    connection_order,
    plan_for_literal,
    plan_for_mx_list,
    plan_from_mx_answer,
)
from ..domain.queue_config import MxListName, QueueConfig
from ..domain.routing_target import RoutingTarget, parse_ip, split_colon_port

DEFAULT_TIMEOUT = 5.0
# KumoMTA's default ip_lookup_strategy: A and AAAA.
BOTH = IpLookupStrategy.IPV4_AND_IPV6
NEGATIVE_TTL = 300.0

T = TypeVar("T")


@dataclass
class _Cached(Generic[T]):
    value: T
    expires_at: float


class _TtlCache(Generic[T]):
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._entries: dict[str, _Cached[T]] = {}

    def get(self, key: str) -> T | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= self._clock():
            del self._entries[key]
            return None
        return entry.value

    def put(self, key: str, value: T, ttl: float) -> None:
        self._entries[key] = _Cached(value, self._clock() + ttl)


class MxResolver:
    """Resolves routing targets to MX plans and host names to addresses.

    `nameservers` are (ip, port) pairs; None uses the system configuration
    (/etc/resolv.conf). `timeout` bounds each whole lookup, retries included.
    """

    def __init__(
        self,
        nameservers: Sequence[tuple[str, int]] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        clock: Callable[[], float] = time.monotonic,
        negative_ttl: float = NEGATIVE_TTL,
    ) -> None:
        if nameservers is None:
            self._resolver = dns.asyncresolver.Resolver()
        else:
            self._resolver = dns.asyncresolver.Resolver(configure=False)
            self._resolver.nameservers = [
                dns.nameserver.Do53Nameserver(host, port) for host, port in nameservers
            ]
        self._resolver.timeout = timeout
        self._resolver.lifetime = timeout
        self._negative_ttl = negative_ttl
        self._mx_cache: _TtlCache[MxAnswer] = _TtlCache(clock)
        self._clock = clock
        # Addresses per strategy, as KumoMTA caches them: the default's on its own, so that
        # the common lookup costs no enum hashing (a Python-level __hash__).
        self._address_cache: _TtlCache[tuple[str, ...]] = _TtlCache(clock)
        self._other_address_caches: dict[IpLookupStrategy, _TtlCache[tuple[str, ...]]] = {}

    async def mx_answer(self, name: str) -> MxAnswer:
        """The MX answer for a DNS name (lowercased A-label form), from cache if fresh."""
        cached = self._mx_cache.get(name)
        if cached is not None:
            return cached
        answer, ttl = await self._query_mx(name)
        self._mx_cache.put(name, answer, ttl)
        return answer

    async def _query_mx(self, name: str) -> tuple[MxAnswer, float]:
        try:
            result = await self._resolver.resolve(name, "MX", search=False)
        except dns.resolver.NXDOMAIN:
            return MxAnswer(MxAnswerKind.NXDOMAIN, detail="NXDOMAIN"), self._negative_ttl
        except dns.resolver.NoAnswer:
            return MxAnswer(MxAnswerKind.NODATA), self._negative_ttl
        except dns.exception.Timeout as err:
            return MxAnswer(MxAnswerKind.TIMEOUT, detail=str(err)), self._negative_ttl
        except dns.exception.DNSException as err:
            return MxAnswer(MxAnswerKind.SERVFAIL, detail=str(err)), self._negative_ttl
        records = tuple(
            MxRecord(int(rdata.preference), rdata.exchange.to_text())
            for rdata in result
            if rdata.rdtype == dns.rdatatype.MX
        )
        ttl = float(result.rrset.ttl) if result.rrset is not None else self._negative_ttl
        return MxAnswer(MxAnswerKind.RECORDS, records), ttl

    async def resolve_mx(self, domain: str) -> MxPlan:
        """The MX plan of a routing target (a domain, optionally `:port`, or a literal).

        Raises RoutingTargetError for an unusable target and MxLookupFailed for NXDOMAIN,
        SERVFAIL and timeouts (to retry later). A null MX is a plan with `is_null_mx`.
        """
        target = RoutingTarget.classify(domain)
        if target.is_literal:
            return plan_for_literal(target)
        return plan_from_mx_answer(target, await self.mx_answer(target.host))

    async def plan_destination(self, routing_target: str, config: QueueConfig) -> MxPlan:
        """The plan for a queue: its mx_list when the config has one, else `resolve_mx`."""
        if config.mx_list is not None:
            return plan_for_mx_list(routing_target, config)
        return await self.resolve_mx(routing_target)

    async def resolve_addresses(self, name: str, strategy: IpLookupStrategy = BOTH) -> list[str]:
        """The addresses of a host name (A before AAAA) under `strategy`; empty when it does
        not resolve."""
        key = name.lower().rstrip(".")
        if strategy is BOTH:
            cache = self._address_cache
        else:
            found = self._other_address_caches.get(strategy)
            if found is None:
                found = self._other_address_caches[strategy] = _TtlCache(self._clock)
            cache = found
        cached = cache.get(key)
        if cached is not None:
            return list(cached)
        answers = await self._lookup_families(key, strategy)
        addresses = tuple(address for found, _ in answers for address in found)
        positive_ttls = [ttl for found, ttl in answers if found]
        ttl = min(positive_ttls) if positive_ttls else self._negative_ttl
        cache.put(key, addresses, ttl)
        return list(addresses)

    async def _lookup_families(
        self, name: str, strategy: IpLookupStrategy
    ) -> list[tuple[tuple[str, ...], float]]:
        """The A and/or AAAA answers `strategy` asks for, A first."""
        if strategy is BOTH:
            return list(
                await asyncio.gather(
                    self._query_addresses(name, "A"), self._query_addresses(name, "AAAA")
                )
            )
        if strategy is IpLookupStrategy.IPV4_ONLY:
            return [await self._query_addresses(name, "A")]
        if strategy is IpLookupStrategy.IPV6_ONLY:
            return [await self._query_addresses(name, "AAAA")]
        v6_first = strategy is IpLookupStrategy.IPV6_THEN_IPV4
        first, then = ("AAAA", "A") if v6_first else ("A", "AAAA")
        # A failed lookup is an empty answer here, so "none found or an error" is one case.
        answer = await self._query_addresses(name, first)
        if answer[0]:
            return [answer]
        return [await self._query_addresses(name, then)]

    async def _query_addresses(self, name: str, rdtype: str) -> tuple[tuple[str, ...], float]:
        try:
            result = await self._resolver.resolve(name, rdtype, search=False)
        except dns.exception.DNSException:
            return (), self._negative_ttl
        ttl = float(result.rrset.ttl) if result.rrset is not None else self._negative_ttl
        return tuple(rdata.to_text() for rdata in result), ttl

    async def connection_candidates(
        self,
        plan: MxPlan,
        rng: random.Random,
        strategy: IpLookupStrategy = BOTH,
    ) -> list[ResolvedAddress]:
        """Looks up every host the plan names (under `strategy`) and orders the addresses to
        try."""
        names = {
            entry.host
            for entry in plan.mx_list or ()
            if isinstance(entry, MxListName) and entry.ip is None
        }
        if plan.mx_list is None and not plan.is_domain_literal and not plan.is_null_mx:
            port_split = plan.port is not None
            bare_hosts = (split_colon_port(h)[0] if port_split else h for h in plan.hosts)
            # An MX exchange written as an IP is used as it is (connection_order): looking it
            # up as a name would only cost a query, or a whole timeout when DNS is slow.
            names |= {host for host in bare_hosts if parse_ip(host) is None}
        found = await asyncio.gather(
            *(self.resolve_addresses(name, strategy) for name in sorted(names))
        )
        return connection_order(plan, dict(zip(sorted(names), found, strict=True)), rng)
