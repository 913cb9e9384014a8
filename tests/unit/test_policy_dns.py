"""kumo.dns without a network: the test resolver (zones given as text), named resolvers,
reverse names, resolv.conf, and the configuration errors and log line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from lua_policy_eval import error_of, meta_of, value_of

from relaystream.core.policy import PolicyLoadError, policy_from_source
from relaystream.core.policy.host_error import HostError
from relaystream.core.policy.namespaces.dns import DEFAULT_RESOLVER, PolicyDns
from relaystream.core.policy.namespaces.dns import test_zones as zones_resolver

ZONE = """
$ORIGIN example.com.
@ 600 MX 10 mx.example.com.
@ 600 TXT "v=spf1 -all"
mx 600 A 127.0.0.1
"""


def with_test_resolver(body: str) -> dict[str, object]:
    return meta_of(f"kumo.dns.configure_test_resolver {{ [[{ZONE}]] }}\n{body}")


def test_the_test_resolver_answers_from_its_zones_and_nothing_else() -> None:
    meta = with_test_resolver(
        "msg:set_meta('hosts', kumo.dns.lookup_mx('example.com').hosts)\n"
        "msg:set_meta('txt', kumo.dns.lookup_txt 'example.com')\n"
        "msg:set_meta('addr', kumo.dns.lookup_addr 'mx.example.com')\n"
        "msg:set_meta('outside', (pcall(kumo.dns.lookup_mx, 'example.net')))"
    )
    assert meta == {
        "hosts": ["mx.example.com."],
        "txt": ["v=spf1 -all"],
        "addr": ["127.0.0.1"],
        "outside": False,
    }


def test_a_named_resolver_serves_only_the_lookups_that_name_it() -> None:
    meta = meta_of(
        f"kumo.dns.define_resolver('rbl', {{ Test = {{ zones = {{ [[{ZONE}]] }} }} }})\n"
        "msg:set_meta('named', kumo.dns.lookup_addr('mx.example.com', 'rbl'))"
    )
    assert meta == {"named": ["127.0.0.1"]}
    assert error_of("kumo.dns.lookup_txt('x.example', 'nope')") == (
        "policy.lua:3: no resolver named 'nope' (kumo.dns.define_resolver)"
    )


@pytest.mark.parametrize(
    ("ip", "ptr_host", "reversed_ip"),
    [
        ("127.0.0.1", "1.0.0.127.in-addr.arpa", "1.0.0.127"),
        ("::1", "1." + "0." * 31 + "ip6.arpa", "1" + ".0" * 31),
    ],
)
def test_reverse_names_are_kumomtas(ip: str, ptr_host: str, reversed_ip: str) -> None:
    assert value_of(f"kumo.dns.ptr_host '{ip}'") == ptr_host
    assert value_of(f"kumo.dns.reverse_ip '{ip}'") == reversed_ip


def test_load_resolv_conf_gives_a_table_configure_resolver_takes(tmp_path: Path) -> None:
    (tmp_path / "resolv.conf").write_text(
        "# comment\nnameserver 10.0.0.1\nnameserver ::1\nsearch a.test b.test\n"
        "options ndots:2 timeout:3 edns0 rotate\n"
    )
    meta = meta_of(
        "local cfg = kumo.dns.load_resolv_conf 'resolv.conf'\n"
        "msg:set_meta('cfg', cfg)\n"
        "kumo.dns.configure_resolver(cfg)",
        base_dir=tmp_path,
    )
    assert meta["cfg"] == {
        "name_servers": ["10.0.0.1:53", "[::1]:53"],
        "search": ["a.test", "b.test"],
        "options": {"ndots": 2, "timeout": 3, "edns0": True},
    }


def test_configuring_logs_that_only_the_policys_lookups_change(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "relaystream.policy")
    policy_from_source(
        "kumo.on('init', function()\n"
        "  kumo.dns.configure_resolver { name_servers = { '10.0.0.1:53' },"
        " options = { timeout = 2, cache_size = 10 } }\n"
        "end)\n",
        "init.lua",
    )
    assert [r.getMessage() for r in caplog.records if r.name == "relaystream.policy"] == [
        "init.lua:2: kumo.dns.configure_resolver: configures this policy's own kumo.dns "
        "lookups in this service; delivery's MX resolution keeps its settings "
        "(RELAYSTREAM_DELIVERY_NAMESERVERS); not applied here: cache_size"
    ]


@pytest.mark.parametrize(
    ("call", "error"),
    [
        ("kumo.dns.configure_resolver {}", "name_servers is required"),
        (
            "kumo.dns.configure_resolver { name_servers = { 'dns.example:53' } }",
            "a name server must be an IP address",
        ),
        ("kumo.dns.configure_test_resolver { '$ORIGIN x.\\n@ 60 MX nonsense' }", "invalid zone"),
        ("kumo.dns.define_resolver('x', { Other = {} })", "expected { Hickory = {...} }"),
        ("kumo.dns.lookup_ptr 'not-an-ip'", "not an IP address: 'not-an-ip'"),
    ],
)
def test_bad_configuration_fails_the_load_at_its_line(call: str, error: str) -> None:
    with pytest.raises(PolicyLoadError) as caught:
        policy_from_source(f"kumo.on('init', function()\n  {call}\nend)\n", "init.lua")
    assert str(caught.value).startswith(f"init.lua:2: {error}")


def test_kumomtas_table_form_of_the_test_resolver_with_servfail_names(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "relaystream.policy")
    meta = meta_of(
        f"kumo.dns.configure_test_resolver {{ zones = {{ {{ zone = [[{ZONE}]], secure = true }} }},"
        " servfail = { 'mx.example.com' } }\n"
        "msg:set_meta('hosts', kumo.dns.lookup_mx('example.com').hosts)\n"
        "msg:set_meta('fails', select(2, pcall(kumo.dns.lookup_addr, 'mx.example.com')))"
    )
    assert meta == {
        "hosts": ["mx.example.com."],
        # Line 10: the zone text spans the lines before it.
        "fails": "policy.lua:10: A lookup for mx.example.com. failed: SERVFAIL",
    }
    (logged,) = [r.getMessage() for r in caplog.records if r.name == "relaystream.policy"]
    assert logged.endswith("; not applied here: secure")


def test_configure_resolver_takes_a_resolver_tagged_with_its_kind() -> None:
    meta = meta_of(
        f"kumo.dns.configure_resolver {{ Test = {{ zones = {{ [[{ZONE}]] }} }} }}\n"
        "msg:set_meta('addr', kumo.dns.lookup_addr 'mx.example.com')"
    )
    assert meta == {"addr": ["127.0.0.1"]}


HOSTS = "127.0.0.1 localhost\n10.1.2.3  Sink.Docker.internal sink # the sink\nfd00::7 sink\n"


def test_the_hosts_file_answers_first_on_the_default_resolver(tmp_path: Path) -> None:
    # As KumoMTA's default resolver (hickory, use_hosts_file Auto): its Docker examples find
    # their own container's address by HOSTNAME this way.
    hosts = tmp_path / "hosts"
    hosts.write_text(HOSTS)
    policy_dns = PolicyDns(hosts_file=hosts)
    assert policy_dns.lookup_addr("sink", None, None, 1.0) == ["10.1.2.3", "fd00::7"]
    assert policy_dns.lookup_addr("SINK.docker.internal.", None, "Ipv6thenIpv4", 1.0) == [
        "10.1.2.3"
    ]
    assert policy_dns.lookup_addr("sink", None, "Ipv6thenIpv4", 1.0) == ["fd00::7", "10.1.2.3"]


def test_a_configured_default_resolver_does_not_read_the_hosts_file(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text(HOSTS)
    policy_dns = PolicyDns(hosts_file=hosts)
    zones, _ = zones_resolver([ZONE])
    policy_dns.set_resolver(DEFAULT_RESOLVER, zones)
    with pytest.raises(HostError, match="address lookup for sink: no such name"):
        policy_dns.lookup_addr("sink", None, None, 1.0)
    assert policy_dns.lookup_addr("mx.example.com", None, None, 1.0) == ["127.0.0.1"]
