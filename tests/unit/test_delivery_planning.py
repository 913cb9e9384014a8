"""Delivery destination planning where no DNS answer is needed.

The planner gets a real `MxResolver` with no nameservers: it sends nothing anywhere, and any
lookup fails at once as DNSFAIL, so a plan that succeeds here provably used no DNS.
"""

from __future__ import annotations

import ipaddress

import pytest

from relaystream.core.dns.resolver import MxResolver
from relaystream.core.domain.mx_plan import MxPlan, ResolvedAddress
from relaystream.core.domain.queue_config import QueueConfig
from relaystream.delivery.planning import (
    AddressRules,
    DeliveryPlan,
    DestinationPlanner,
    Undeliverable,
    destinations_for,
)
from relaystream.delivery.smtp_session import Destination

PLAN = MxPlan(domain="example.com", site_name="mx.example.com")


def planner(*, allow_prohibited: bool = False) -> DestinationPlanner:
    return DestinationPlanner(MxResolver([]), default_port=2525, allow_prohibited=allow_prohibited)


def address(name: str, ip: str, port: int | None = None) -> ResolvedAddress:
    return ResolvedAddress(name, ipaddress.ip_address(ip), port)


def mx_list_config(*entries: object) -> QueueConfig:
    return QueueConfig.from_mapping({"protocol": {"smtp": {"mx_list": list(entries)}}})


def test_addresses_become_destinations_in_order_with_the_default_port() -> None:
    ordered = [address("b.example", "192.0.2.2", 26), address("a.example", "2001:db8::1")]
    plan = destinations_for(PLAN, ordered, AddressRules())
    assert plan == DeliveryPlan(
        "mx.example.com",
        (Destination("b.example", "192.0.2.2", 26), Destination("a.example", "2001:db8::1", 25)),
    )


def test_no_addresses_is_transient() -> None:
    verdict = destinations_for(PLAN, [], AddressRules())
    assert isinstance(verdict, Undeliverable)
    assert not verdict.permanent
    assert (verdict.response.code, str(verdict.response.enhanced_code)) == (451, "4.4.4")
    assert verdict.site == "mx.example.com"


@pytest.mark.parametrize("ip", ["127.0.0.1", "127.1.2.3", "::1", "0.0.0.0", "::"])
def test_prohibited_destinations_bounce_unless_allowed(ip: str) -> None:
    ordered = [address("ok.example", "192.0.2.1"), address("bad.example", ip)]
    verdict = destinations_for(PLAN, ordered, AddressRules())
    assert isinstance(verdict, Undeliverable)
    assert verdict.permanent
    assert (verdict.response.code, str(verdict.response.enhanced_code)) == (550, "5.4.4")
    allowed = destinations_for(PLAN, ordered, AddressRules(allow_prohibited=True))
    assert isinstance(allowed, DeliveryPlan)
    assert [c.address for c in allowed.candidates] == ["192.0.2.1", ip]


def test_skip_hosts_are_left_out_and_only_skipped_hosts_is_transient() -> None:
    ordered = [address("a.example", "192.0.2.1"), address("b.example", "198.51.100.7")]
    skip = (ipaddress.ip_network("192.0.2.0/24"),)
    plan = destinations_for(PLAN, ordered, AddressRules(default_port=2525, skip=skip))
    assert plan == DeliveryPlan("mx.example.com", (Destination("b.example", "198.51.100.7", 2525),))
    every = (*skip, ipaddress.ip_network("198.51.100.0/24"))
    verdict = destinations_for(PLAN, ordered, AddressRules(skip=every))
    assert isinstance(verdict, Undeliverable)
    assert not verdict.permanent
    assert "skip_hosts" in verdict.response.content


def test_an_egress_paths_prohibited_hosts_replace_the_default_networks() -> None:
    ordered = [address("a.example", "192.0.2.1"), address("lo.example", "127.0.0.1")]
    own = (ipaddress.ip_network("192.0.2.0/24"),)
    verdict = destinations_for(PLAN, ordered, AddressRules(prohibited=own))
    assert isinstance(verdict, Undeliverable) and verdict.permanent
    assert "192.0.2.0/24" in verdict.response.content
    allowed = destinations_for(PLAN, ordered[1:], AddressRules(prohibited=()))
    assert isinstance(allowed, DeliveryPlan)


async def test_a_domain_literal_needs_no_dns() -> None:
    plan = await planner().plan("example.com![192.0.2.7]:26", QueueConfig())
    assert plan == DeliveryPlan("192.0.2.7:26", (Destination("192.0.2.7", "192.0.2.7", 26),))


async def test_an_mx_list_without_names_needs_no_dns_and_keeps_its_order() -> None:
    config = mx_list_config(
        "[192.0.2.9]", {"name": "mx.example.com", "addr": "192.0.2.1:26"}, "192.0.2.3"
    )
    plan = await planner().plan("example.com", config)
    assert isinstance(plan, DeliveryPlan), plan
    assert plan.site == "mx_list:[192.0.2.9],192.0.2.1:26,192.0.2.3"
    assert plan.candidates == (
        Destination("192.0.2.9", "192.0.2.9", 2525),
        Destination("mx.example.com", "192.0.2.1", 26),
        Destination("192.0.2.3", "192.0.2.3", 2525),
    )


async def test_a_dns_name_does_go_to_dns() -> None:
    # The counterpart of the two tests above: with no nameserver, DNS cannot answer.
    verdict = await planner().plan("example.com", QueueConfig())
    assert isinstance(verdict, Undeliverable)
    assert not verdict.permanent
    assert (verdict.response.code, str(verdict.response.enhanced_code)) == (451, "4.4.4")
    assert verdict.site == "DNSFAIL:example.com"


async def test_an_invalid_routing_domain_is_transient() -> None:
    verdict = await planner().plan("tenant@example.com!bad..name", QueueConfig())
    assert isinstance(verdict, Undeliverable)
    assert not verdict.permanent
    assert (verdict.response.code, str(verdict.response.enhanced_code)) == (451, "4.3.5")


async def test_prohibited_literals_bounce_unless_allowed() -> None:
    bounced = await planner().plan("example.com![127.0.0.1]", QueueConfig())
    assert isinstance(bounced, Undeliverable) and bounced.permanent
    allowed = await planner(allow_prohibited=True).plan("example.com![127.0.0.1]", QueueConfig())
    assert isinstance(allowed, DeliveryPlan)
