"""DNS lookups for destination planning, on dnspython's async resolver.

A stop-gap adapter: core/dns (MxResolver) was not available when the delivery service was
written; this module implements `planning.Resolver` with the same semantics (ROUTING.md 7)
and should become a thin adapter over MxResolver (caching positive answers for their TTL and
failures for 5 minutes) once that exists. Timeouts default to 5 s per lookup.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

from ..core.domain.mx_plan import MxAnswer, MxAnswerKind, MxRecord
from ..core.runtime.settings import HostPort

DNS_TIMEOUT_SECONDS = 5.0


class DnsResolver:
    """MX and A/AAAA lookups against the system resolver or the given nameservers."""

    def __init__(
        self, nameservers: Sequence[HostPort] = (), timeout: float = DNS_TIMEOUT_SECONDS
    ) -> None:
        self._resolver = dns.asyncresolver.Resolver(configure=not nameservers)
        if nameservers:
            self._resolver.nameservers = [
                dns.nameserver.Do53Nameserver(server.host, server.port) for server in nameservers
            ]
        self._resolver.lifetime = timeout
        self._resolver.timeout = timeout

    async def mx(self, domain: str) -> MxAnswer:
        try:
            answer = await self._resolver.resolve(domain, dns.rdatatype.MX, search=False)
        except dns.resolver.NXDOMAIN:
            return MxAnswer(MxAnswerKind.NXDOMAIN, detail=f"NXDOMAIN for {domain}")
        except dns.resolver.NoAnswer:
            return MxAnswer(MxAnswerKind.NODATA)
        except dns.resolver.LifetimeTimeout as error:
            return MxAnswer(MxAnswerKind.TIMEOUT, detail=str(error))
        except dns.exception.DNSException as error:
            return MxAnswer(MxAnswerKind.SERVFAIL, detail=str(error))
        records = tuple(MxRecord(rdata.preference, rdata.exchange.to_text()) for rdata in answer)
        return MxAnswer(MxAnswerKind.RECORDS, records)

    async def addresses(self, host: str) -> Sequence[str]:
        """A then AAAA answers; a host that does not resolve has none (and is skipped)."""
        answers = await asyncio.gather(
            self._lookup(host, dns.rdatatype.A), self._lookup(host, dns.rdatatype.AAAA)
        )
        return [address for found in answers for address in found]

    async def _lookup(self, host: str, rdtype: dns.rdatatype.RdataType) -> list[str]:
        try:
            answer = await self._resolver.resolve(host, rdtype, search=False)
        except dns.exception.DNSException:
            return []
        return [rdata.to_text() for rdata in answer]
