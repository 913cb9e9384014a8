"""MX resolution against a real dnsmasq on loopback: the resolver and `relaystream resolve`."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dnsmasq import DnsRecords, DnsServer, MxHost, dns_server_fixture

from relaystream.core.dns.resolver import MxResolver
from relaystream.core.domain.mx_plan import MxAnswerKind, MxLookupFailed
from relaystream.core.domain.queue_config import QueueConfig

pytestmark = pytest.mark.dns

RECORDS = DnsRecords(
    mx=[
        MxHost("mx.test", "mx1.mx.test", 10),
        MxHost("mx.test", "mx2.mx.test", 10),
        MxHost("mx.test", "backup.mx.test", 20),
        MxHost("ghost.test", "nowhere.ghost.test", 10),
        MxHost("ghost.test", "real.ghost.test", 20),
    ],
    hosts={
        "mx1.mx.test": ["192.0.2.1", "2001:db8::1"],
        "mx2.mx.test": ["192.0.2.2"],
        "backup.mx.test": ["2001:db8::20"],
        "implicit.test": ["192.0.2.30"],
        "real.ghost.test": ["192.0.2.40"],
        "smart.host.test": ["192.0.2.50", "192.0.2.51"],
    },
    null_mx=["nullmx.test"],
)


@pytest.fixture(scope="module")
def dns_server() -> Iterator[DnsServer]:
    yield from dns_server_fixture(RECORDS)


@pytest.fixture
def resolver(dns_server: DnsServer) -> MxResolver:
    return MxResolver([dns_server.address], timeout=2.0)


async def test_mx_plan_by_preference(resolver: MxResolver) -> None:
    plan = await resolver.resolve_mx("MX.test")
    assert plan.by_preference == ((10, ("mx1.mx.test", "mx2.mx.test")), (20, ("backup.mx.test",)))
    assert plan.site_name == "(mx1|mx2|backup).mx.test"
    assert plan.is_mx


async def test_addresses_a_then_aaaa(resolver: MxResolver) -> None:
    assert await resolver.resolve_addresses("mx1.mx.test") == ["192.0.2.1", "2001:db8::1"]
    assert sorted(await resolver.resolve_addresses("smart.host.test")) == [
        "192.0.2.50",
        "192.0.2.51",
    ]
    assert await resolver.resolve_addresses("backup.mx.test") == ["2001:db8::20"]
    assert await resolver.resolve_addresses("missing.mx.test") == []


async def test_connection_candidates_in_preference_order(resolver: MxResolver) -> None:
    plan = await resolver.resolve_mx("mx.test")
    candidates = await resolver.connection_candidates(plan, random.Random(1))
    assert {c.addr for c in candidates[:3]} == {"192.0.2.1", "2001:db8::1", "192.0.2.2"}
    assert [(c.name, c.addr) for c in candidates[3:]] == [("backup.mx.test", "2001:db8::20")]


async def test_unresolvable_hosts_are_skipped(resolver: MxResolver) -> None:
    plan = await resolver.resolve_mx("ghost.test")
    candidates = await resolver.connection_candidates(plan, random.Random(1))
    assert [(c.name, c.addr) for c in candidates] == [("real.ghost.test", "192.0.2.40")]


async def test_null_mx(resolver: MxResolver) -> None:
    plan = await resolver.resolve_mx("nullmx.test")
    assert plan.is_null_mx
    assert await resolver.connection_candidates(plan, random.Random(1)) == []


async def test_nodata_is_an_implicit_mx(resolver: MxResolver) -> None:
    plan = await resolver.resolve_mx("implicit.test")
    assert not plan.is_mx
    assert plan.hosts == ("implicit.test",)
    candidates = await resolver.connection_candidates(plan, random.Random(1))
    assert [c.addr for c in candidates] == ["192.0.2.30"]


async def test_nxdomain_is_transient(resolver: MxResolver) -> None:
    with pytest.raises(MxLookupFailed) as caught:
        await resolver.resolve_mx("nothing-here.test")
    assert caught.value.reason == "NXDOMAIN"
    assert caught.value.site_name == "NXDOMAIN:nothing-here.test"
    assert caught.value.response.code == 451


async def test_timeout_is_transient() -> None:
    # Nothing listens on the discard port: the lookup times out.
    resolver = MxResolver([("127.0.0.1", 9)], timeout=0.5)
    answer = await resolver.mx_answer("mx.test")
    assert answer.kind in (MxAnswerKind.TIMEOUT, MxAnswerKind.SERVFAIL)
    with pytest.raises(MxLookupFailed) as caught:
        await resolver.resolve_mx("mx.test")
    assert caught.value.reason == "DNSFAIL"


async def test_port_and_literals(resolver: MxResolver) -> None:
    plan = await resolver.resolve_mx("mx.test:2525")
    assert plan.site_name == "(mx1|mx2|backup).mx.test:2525"
    candidates = await resolver.connection_candidates(plan, random.Random(1))
    assert {c.port for c in candidates} == {2525}
    literal = await resolver.resolve_mx("[IPv6:::1]")
    assert literal.site_name == "::1"


async def test_mx_list_resolves_a_and_aaaa_only(resolver: MxResolver) -> None:
    config = QueueConfig.from_mapping(
        {"protocol": {"smtp": {"mx_list": ["smart.host.test:2525", "mx.test", "[10.0.0.1]"]}}}
    )
    plan = await resolver.plan_destination("example.com", config)
    assert plan.site_name == "mx_list:smart.host.test:2525,mx.test,[10.0.0.1]"
    candidates = await resolver.connection_candidates(plan, random.Random(1))
    # mx.test has MX records but no A/AAAA: an mx_list entry never follows MX.
    assert sorted(c.addr for c in candidates[:2]) == ["192.0.2.50:2525", "192.0.2.51:2525"]
    assert [c.addr for c in candidates[2:]] == ["10.0.0.1"]


async def test_positive_and_negative_answers_are_cached(dns_server: DnsServer) -> None:
    now = [1000.0]
    resolver = MxResolver([dns_server.address], timeout=2.0, clock=lambda: now[0])
    first = await resolver.mx_answer("mx.test")
    missing = await resolver.mx_answer("nothing-here.test")
    dns_server.stop()  # from now on only the cache can answer
    try:
        assert await resolver.mx_answer("mx.test") == first
        assert await resolver.mx_answer("nothing-here.test") == missing
        now[0] += 61  # past the 60 s record TTL, within the 5 min negative TTL
        assert (await resolver.mx_answer("nothing-here.test")).kind is MxAnswerKind.NXDOMAIN
        assert (await resolver.mx_answer("mx.test")).kind is not MxAnswerKind.RECORDS
    finally:
        dns_server.start()


def _cli(*argv: str) -> tuple[int, Any]:
    binary = Path(sys.executable).parent / "relaystream"
    result = subprocess.run(
        [str(binary), *argv, "--json"], capture_output=True, text=True, timeout=60, check=False
    )
    return result.returncode, json.loads(result.stdout)


def test_cli_resolve_mx(dns_server: DnsServer) -> None:
    code, result = _cli("resolve", "mx.test", "--nameserver", dns_server.nameserver)
    assert code == 0
    assert result["site_name"] == "(mx1|mx2|backup).mx.test"
    assert result["preferences"] == [
        {
            "preference": 10,
            "hosts": [
                {"host": "mx1.mx.test", "addresses": ["192.0.2.1", "2001:db8::1"]},
                {"host": "mx2.mx.test", "addresses": ["192.0.2.2"]},
            ],
        },
        {"preference": 20, "hosts": [{"host": "backup.mx.test", "addresses": ["2001:db8::20"]}]},
    ]


def test_cli_resolve_implicit_mx(dns_server: DnsServer) -> None:
    code, result = _cli("resolve", "implicit.test", "--nameserver", dns_server.nameserver)
    assert code == 0
    assert result["is_mx"] is False
    assert result["preferences"] == [
        {"preference": 1, "hosts": [{"host": "implicit.test", "addresses": ["192.0.2.30"]}]}
    ]


def test_cli_resolve_null_mx(dns_server: DnsServer) -> None:
    code, result = _cli("resolve", "nullmx.test", "--nameserver", dns_server.nameserver)
    assert code == 3
    assert result["status"] == "null_mx"
    assert result["response"]["code"] == 556
    assert result["response"]["content"] == "Recipient address has a null MX"


def test_cli_resolve_nxdomain(dns_server: DnsServer) -> None:
    code, result = _cli("resolve", "nothing-here.test", "--nameserver", dns_server.nameserver)
    assert code == 1
    assert result["reason"] == "NXDOMAIN"
    assert result["response"]["enhanced_code"] == {"class": 4, "subject": 4, "detail": 4}


def test_cli_resolve_literal_needs_no_dns() -> None:
    code, result = _cli("resolve", "[10.0.0.1]:2525", "--nameserver", "127.0.0.1:9")
    assert code == 0
    assert result["site_name"] == "10.0.0.1:2525"
    assert result["preferences"][0]["hosts"][0]["addresses"] == ["10.0.0.1:2525"]
