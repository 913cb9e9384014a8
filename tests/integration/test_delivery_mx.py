"""MX resolution for delivery through a real dnsmasq on loopback, delivering to aiosmtpd sinks.

Delivery resolves with core/dns's `MxResolver`, so its caching applies: a second delivery to a
domain within the TTL asks no DNS, and a failed lookup is remembered for 5 minutes. The cache
tests stop their own dnsmasq to prove that, and move the resolver's injectable clock.
"""

from __future__ import annotations

import json
import random
import socket
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import UTC, datetime

import pytest
from delivery_sinks import SmtpSink, refused_port, start_sink
from dnsmasq import DnsRecords, DnsServer, MxHost, dns_server_fixture

from relaystream.core.dns.resolver import NEGATIVE_TTL, MxResolver
from relaystream.core.domain.queue_config import QueueConfig
from relaystream.core.events.records import DeliveryRequest
from relaystream.core.runtime.settings import DeliverySettings
from relaystream.delivery.attempt import AttemptResult, Deliverer
from relaystream.delivery.planning import DeliveryPlan, DestinationPlanner

pytestmark = pytest.mark.dns

RECORDS = DnsRecords(
    mx=[
        # Two MX hosts at preference 10 and a backup at 20, all on loopback.
        MxHost("mx.test", "mx1.mx.test", 10),
        MxHost("mx.test", "mx2.mx.test", 10),
        MxHost("mx.test", "backup.mx.test", 20),
    ],
    hosts={
        "mx1.mx.test": ["127.0.0.1"],
        "mx2.mx.test": ["127.0.0.1"],
        "backup.mx.test": ["127.0.0.1"],
        # A name with an address and no MX: the implicit MX is the name itself.
        "implicit.test": ["127.0.0.1"],
        # An A-only name for mx_list entries.
        "smarthost.test": ["127.0.0.1"],
    },
    null_mx=["nullmx.test"],  # RFC 7505
    ttl=60,
)
DNS_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def dns_server() -> Iterator[DnsServer]:
    yield from dns_server_fixture(RECORDS)


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    server = await start_sink()
    yield server
    await server.close()


def free_udp_port() -> int:
    """A loopback UDP port nobody serves: queries to it are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class FakeClock:
    """The resolver's injectable clock, moved by hand (time only: DNS stays real)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_resolver(dns_server: DnsServer, clock: FakeClock | None = None) -> MxResolver:
    if clock is None:
        return MxResolver([dns_server.address], timeout=DNS_TIMEOUT)
    return MxResolver([dns_server.address], timeout=DNS_TIMEOUT, clock=clock)


def make_deliverer(
    resolver: MxResolver, smtp_port: int, *, allow_prohibited: bool = True
) -> Deliverer:
    delivery = DeliverySettings(
        ehlo_name="relay.test",
        connect_timeout_seconds=5.0,
        banner_timeout_seconds=5.0,
        command_timeout_seconds=10.0,
        allow_loopback=allow_prohibited,
        smtp_port=smtp_port,
    )
    return Deliverer.from_settings(delivery, resolver)


async def deliver_once(
    resolver: MxResolver, smtp_port: int, request: DeliveryRequest
) -> AttemptResult:
    deliverer = make_deliverer(resolver, smtp_port)
    try:
        return await deliverer.deliver(request)
    finally:
        await deliverer.aclose()


def request(queue: str, config: Mapping[str, object] | None = None) -> DeliveryRequest:
    now = datetime.now(UTC)
    return {
        "id": "f" * 32,
        "queue": queue,
        "attempt": 0,
        "sender": "sender@example.com",
        "recipient": "rcpt@mx.test",
        "content": b"Subject: mx\r\n\r\nbody\r\n",
        "meta": {},
        "created_at": now,
        "queue_config": json.dumps(config or {}),
        "released_at": now,
    }


def reply_code(result: AttemptResult) -> tuple[int, str]:
    return result.response.code, str(result.response.enhanced_code)


async def test_mx_resolution_delivers_to_the_mx_hosts(
    dns_server: DnsServer, sink: SmtpSink
) -> None:
    result = await deliver_once(make_resolver(dns_server), sink.port, request("mx.test"))
    assert result.kind == "DELIVERED", result.response
    assert result.site == "(mx1|mx2|backup).mx.test"
    assert result.peer is not None
    assert result.peer.peer_name in ("mx1.mx.test", "mx2.mx.test")  # preference 10 first
    assert len(sink.messages) == 1


async def test_addresses_are_shuffled_within_a_preference_only(dns_server: DnsServer) -> None:
    resolver = make_resolver(dns_server)
    orders = set()
    for seed in range(20):
        planner = DestinationPlanner(resolver, allow_prohibited=True, rng=random.Random(seed))
        plan = await planner.plan("mx.test", QueueConfig())
        assert isinstance(plan, DeliveryPlan), plan
        names = tuple(candidate.peer_name for candidate in plan.candidates)
        assert sorted(names[:2]) == ["mx1.mx.test", "mx2.mx.test"]
        assert names[2:] == ("backup.mx.test",)
        orders.add(names)
    assert len(orders) == 2  # both orders of the preference-10 hosts occur


async def test_a_routing_domain_port_overrides_the_default_port(
    dns_server: DnsServer, sink: SmtpSink
) -> None:
    queue = f"tenant@example.com!mx.test:{sink.port}"
    result = await deliver_once(make_resolver(dns_server), refused_port(), request(queue))
    assert result.kind == "DELIVERED", result.response
    assert result.peer is not None and result.peer.port == sink.port
    assert result.site == f"(mx1|mx2|backup).mx.test:{sink.port}"


async def test_a_name_without_mx_uses_its_own_address(
    dns_server: DnsServer, sink: SmtpSink
) -> None:
    result = await deliver_once(make_resolver(dns_server), sink.port, request("implicit.test"))
    assert result.kind == "DELIVERED", result.response
    assert result.site == "implicit.test"


async def test_null_mx_bounces(dns_server: DnsServer, sink: SmtpSink) -> None:
    result = await deliver_once(make_resolver(dns_server), sink.port, request("nullmx.test"))
    assert result.kind == "BOUNCE"
    assert reply_code(result) == (556, "5.1.10")
    assert sink.messages == []


async def test_nxdomain_is_transient(dns_server: DnsServer, sink: SmtpSink) -> None:
    result = await deliver_once(make_resolver(dns_server), sink.port, request("missing.test"))
    assert result.kind == "TRANSIENT_FAILURE"
    assert reply_code(result) == (451, "4.4.4")
    assert result.site == "NXDOMAIN:missing.test"
    assert sink.messages == []


async def test_an_unreachable_dns_server_is_transient(sink: SmtpSink) -> None:
    resolver = MxResolver([("127.0.0.1", free_udp_port())], timeout=DNS_TIMEOUT)
    result = await deliver_once(resolver, sink.port, request("mx.test"))
    assert result.kind == "TRANSIENT_FAILURE"
    assert reply_code(result) == (451, "4.4.4")
    assert result.site == "DNSFAIL:mx.test"


async def test_loopback_mx_hosts_are_prohibited_unless_allowed(
    dns_server: DnsServer, sink: SmtpSink
) -> None:
    deliverer = make_deliverer(make_resolver(dns_server), sink.port, allow_prohibited=False)
    result = await deliverer.deliver(request("mx.test"))
    await deliverer.aclose()
    assert result.kind == "BOUNCE"
    assert reply_code(result) == (550, "5.4.4")
    assert sink.messages == []


async def test_mx_list_names_are_resolved_for_addresses_only(
    dns_server: DnsServer, sink: SmtpSink
) -> None:
    config = {"protocol": {"smtp": {"mx_list": [f"smarthost.test:{sink.port}"]}}}
    # The queue's domain has a null MX: with an mx_list, MX is never looked up.
    result = await deliver_once(
        make_resolver(dns_server), refused_port(), request("nullmx.test", config)
    )
    assert result.kind == "DELIVERED", result.response
    assert result.peer is not None and result.peer.peer_name == "smarthost.test"
    assert result.site == f"mx_list:smarthost.test:{sink.port}"


async def test_a_second_delivery_within_the_ttl_asks_no_dns(sink: SmtpSink) -> None:
    clock = FakeClock()
    with DnsServer(RECORDS) as own_server:
        resolver = make_resolver(own_server, clock)
        deliverer = make_deliverer(resolver, sink.port)
        first = await deliverer.deliver(request("mx.test"))
        assert first.kind == "DELIVERED", first.response
    try:
        # dnsmasq is gone: only the cache can answer now.
        clock.now += RECORDS.ttl - 1
        second = await deliverer.deliver(request("mx.test"))
        assert second.kind == "DELIVERED", second.response
        assert second.site == first.site
        assert len(sink.messages) == 2
        # The same question from an empty cache does need the server, and fails.
        fresh = await deliver_once(make_resolver(own_server), sink.port, request("mx.test"))
        assert fresh.kind == "TRANSIENT_FAILURE"
        assert fresh.site == "DNSFAIL:mx.test"
        # Past the TTL the cached answer is dropped and the lookup goes to the (dead) server.
        clock.now += 2
        expired = await deliverer.deliver(request("mx.test"))
        assert expired.kind == "TRANSIENT_FAILURE"
        assert reply_code(expired) == (451, "4.4.4")
        assert expired.site == "DNSFAIL:mx.test"
    finally:
        await deliverer.aclose()


async def test_a_failed_lookup_is_cached_for_the_negative_ttl(sink: SmtpSink) -> None:
    clock = FakeClock()
    with DnsServer(RECORDS) as own_server:
        deliverer = make_deliverer(make_resolver(own_server, clock), sink.port)
        first = await deliverer.deliver(request("missing.test"))
    try:
        assert first.site == "NXDOMAIN:missing.test"
        # dnsmasq is gone; asking it now would give DNSFAIL, so NXDOMAIN comes from the cache.
        clock.now += NEGATIVE_TTL - 1
        cached = await deliverer.deliver(request("missing.test"))
        assert cached.kind == "TRANSIENT_FAILURE"
        assert reply_code(cached) == (451, "4.4.4")
        assert cached.site == "NXDOMAIN:missing.test"
        clock.now += 2
        requeried = await deliverer.deliver(request("missing.test"))
        assert requeried.kind == "TRANSIENT_FAILURE"
        assert requeried.site == "DNSFAIL:missing.test"
        assert sink.messages == []
    finally:
        await deliverer.aclose()
