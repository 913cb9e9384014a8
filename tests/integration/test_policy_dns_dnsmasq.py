"""kumo.dns against a real dnsmasq: a policy configures its resolver in init and looks up MX,
TXT, A/AAAA, PTR and a DNS block list, each lookup bounded by the policy call's deadline."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from dnsmasq import DnsRecords, DnsServer, MxHost, dns_server_fixture

from relaystream.core.policy import (
    PolicyAccepted,
    PolicyFailed,
    PolicyLimits,
    PolicyMessage,
    PolicyResult,
    policy_from_source,
)

MESSAGE = PolicyMessage("msg-1", "alice@example.org", "bob@example.com", {})
RECORDS = DnsRecords(
    mx=[
        MxHost("example.test", "mx2.example.test", 20),
        MxHost("example.test", "mx1.example.test", 10),
        MxHost("example.test", "mx1b.example.test", 10),
    ],
    hosts={
        "mx1.example.test": ["127.0.0.10", "::10"],
        "implicit.test": ["127.0.0.11"],
        # A block list listing 127.0.0.2, as real ones do.
        "2.0.0.127.bl.test": ["127.0.0.2"],
    },
    txt={
        "example.test": ["v=spf1 -all", "site-verification=abc"],
        "2.0.0.127.bl.test": ["Blocked - see https://bl.test/127.0.0.2"],
    },
)


@pytest.fixture(scope="module")
def dns_server() -> Iterator[DnsServer]:
    yield from dns_server_fixture(RECORDS)


def run(nameserver: str, body: str, limits: PolicyLimits | None = None) -> PolicyResult:
    source = (
        "local kumo = require 'kumo'\n"
        "kumo.on('init', function()\n"
        f"  kumo.dns.configure_resolver {{ name_servers = {{ '{nameserver}' }} }}\n"
        "end)\n"
        "kumo.on('smtp_server_message_received', function(msg)\n" + body + "\nend)\n"
    )
    return policy_from_source(source, "policy.lua", limits).on_message_received("ESMTP", MESSAGE)


def meta_of(dns_server: DnsServer, body: str) -> dict[str, object]:
    result = run(dns_server.nameserver, body)
    assert isinstance(result, PolicyAccepted), result
    return dict(result.meta)


def test_lookup_mx_has_kumomtas_shape(dns_server: DnsServer) -> None:
    meta = meta_of(dns_server, "msg:set_meta('mx', kumo.dns.lookup_mx 'example.test')")
    assert meta["mx"] == {
        "by_pref": {
            "10": ["mx1.example.test.", "mx1b.example.test."],
            "20": ["mx2.example.test."],
        },
        "hosts": ["mx1.example.test.", "mx1b.example.test.", "mx2.example.test."],
        "site_name": "(mx1|mx1b|mx2).example.test",
        "domain_name": "example.test.",
        "is_domain_literal": False,
        "is_mx": True,
        "mta_sts": "None",
    }


def test_a_domain_without_mx_is_its_own_implicit_mx(dns_server: DnsServer) -> None:
    meta = meta_of(dns_server, "msg:set_meta('mx', kumo.dns.lookup_mx 'implicit.test')")
    mx = meta["mx"]
    assert isinstance(mx, dict)
    assert (mx["hosts"], mx["is_mx"]) == (["implicit.test."], False)


def test_txt_addr_and_ptr_lookups(dns_server: DnsServer) -> None:
    meta = meta_of(
        dns_server,
        "msg:set_meta('txt', kumo.dns.lookup_txt 'example.test')\n"
        "msg:set_meta('addr', kumo.dns.lookup_addr 'mx1.example.test')\n"
        "msg:set_meta('v6', kumo.dns.lookup_addr('mx1.example.test', nil, 'Ipv6Only'))\n"
        "msg:set_meta('ptr', kumo.dns.lookup_ptr '127.0.0.10')",
    )
    assert sorted(meta["txt"]) == ["site-verification=abc", "v=spf1 -all"]  # type: ignore[arg-type]
    assert meta["addr"] == ["127.0.0.10", "::10"]
    assert meta["v6"] == ["::10"]
    assert meta["ptr"] == ["mx1.example.test."]


def test_rbl_lookup_gives_the_listing_and_its_reason_or_nothing(dns_server: DnsServer) -> None:
    meta = meta_of(
        dns_server,
        "local ip, reason = kumo.dns.rbl_lookup('127.0.0.2:25', 'bl.test')\n"
        "msg:set_meta('listed', { ip, reason })\n"
        "local clean_ip, clean_reason = kumo.dns.rbl_lookup('127.0.0.3', 'bl.test')\n"
        "msg:set_meta('clean', clean_ip == nil and clean_reason == nil)",
    )
    assert meta == {
        "listed": ["127.0.0.2", "Blocked - see https://bl.test/127.0.0.2"],
        "clean": True,
    }


def test_a_name_that_does_not_exist_is_a_policy_error_at_the_line(dns_server: DnsServer) -> None:
    result = run(dns_server.nameserver, "kumo.dns.lookup_mx 'nowhere.test'")
    assert isinstance(result, PolicyFailed)
    assert result.message == ("policy.lua:6: MX lookup for nowhere.test: no such domain (NXDOMAIN)")


def test_a_silent_name_server_is_given_up_at_the_policy_deadline() -> None:
    # A bound UDP socket that never answers: the lookup waits, the deadline ends it.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        started = time.monotonic()
        result = run(
            f"127.0.0.1:{port}",
            "kumo.dns.lookup_mx 'example.test'",
            PolicyLimits(deadline_seconds=0.5),
        )
        elapsed = time.monotonic() - started
    assert isinstance(result, PolicyFailed)
    assert "timed out" in result.message or "deadline" in result.message
    assert elapsed < 4  # the resolver's own 5 s timeout did not apply
