"""kumo.make_listener_domain, the get_listener_domain event (Policy.get_listener_domain) and
policy-extras.listener_domains with its listener_domains.toml."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from relaystream.core.domain.listener_domain import ListenerDomain, ReportHandling
from relaystream.core.policy import (
    Policy,
    PolicyLoadError,
    PolicyRuntimeError,
    policy_from_file,
    policy_from_source,
)

LISTENER_DOMAINS_TOML = """
["example.com"]
relay_to = true

["bounce.example.com"]
log_oob = true

["fbl.example.com"]
log_arf = "LogThenDrop"

["send.example.com"]
relay_from = [ '10.0.0.0/24' ]

["auth-send.example.com"]
relay_from_authz = [ 'username1' ]

["*.example.com"]
log_oob = true
log_arf = true
relay_to = true

["www.example.com"]
relay_to = false

[listener."127.0.0.1:25"."*.example.com"]
log_oob = false
relay_to = true
"""

INIT_LUA = """
local kumo = require 'kumo'
local listener_domains = require 'policy-extras.listener_domains'

kumo.on('get_listener_domain', listener_domains:setup { 'listener_domains.toml' })
"""

CONN = {"received_from": "10.9.8.7:40000", "received_via": "127.0.0.1:2525"}


def helper_policy(tmp_path: Path, toml: str = LISTENER_DOMAINS_TOML) -> Policy:
    (tmp_path / "listener_domains.toml").write_text(toml)
    (tmp_path / "init.lua").write_text(INIT_LUA)
    return policy_from_file(tmp_path / "init.lua")


def test_make_listener_domain_checks_and_normalizes_its_fields() -> None:
    policy = policy_from_source(
        "kumo.on('get_listener_domain', function(domain, listener, conn_meta)\n"
        "  local made = kumo.make_listener_domain { relay_to = true, log_oob = true,\n"
        "    relay_from = { '10.0.0.1/24' } }\n"
        "  assert(made.log_oob == 'LogThenRelay' and made.log_arf == 'Ignore')\n"
        "  return made\n"
        "end)\n",
        "policy.lua",
    )
    assert policy.get_listener_domain("example.com", "127.0.0.1:25", {}) == ListenerDomain(
        relay_to=True,
        relay_from=(ipaddress.ip_network("10.0.0.0/24"),),
        log_oob=ReportHandling.LOG_THEN_RELAY,
    )


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ("{ relay_too = true }", "unknown field 'relay_too' (known: log_arf, log_oob,"),
        ("{ log_arf = 'yes' }", "bad value for field 'log_arf': expected true, false or one of"),
        ("{ relay_to = 'yes' }", "bad value for field 'relay_to': expected a boolean"),
        ("{ relay_from = { '10.0.0.300/24' } }", "bad relay_from entry '10.0.0.300/24'"),
        ("'relay'", "kumo.make_listener_domain: expected a table, got a string"),
    ],
)
def test_make_listener_domain_refuses_what_it_does_not_know(params: str, error: str) -> None:
    with pytest.raises(PolicyLoadError) as caught:
        policy_from_source(f"\nlocal d = kumo.make_listener_domain {params}\n", "policy.lua")
    assert str(caught.value).startswith("policy.lua:2: kumo.make_listener_domain: ")
    assert error in str(caught.value)


def test_a_handler_using_the_connection_meta_as_the_docs_do() -> None:
    policy = policy_from_source(
        "kumo.on('get_listener_domain', function(domain, listener, conn_meta)\n"
        "  if conn_meta:get_meta 'authn_id' then\n"
        "    return kumo.make_listener_domain { relay_to = true }\n"
        "  end\n"
        "end)\n",
        "policy.lua",
    )
    authenticated = policy.get_listener_domain("x.org", "127.0.0.1:25", {"authn_id": "daniel"})
    assert authenticated == ListenerDomain(relay_to=True)
    assert policy.get_listener_domain("x.org", "127.0.0.1:25", {}) is None
    assert policy_from_source("", "policy.lua").get_listener_domain("x.org", "l", {}) is None


def test_a_handler_that_returns_no_listener_domain_or_fails_is_an_error() -> None:
    policy = policy_from_source(
        "kumo.on('get_listener_domain', function(domain, listener, conn_meta)\n"
        "  if domain == 'fail.org' then error('no database') end\n"
        "  return 'relay'\n"
        "end)\n",
        "policy.lua",
    )
    with pytest.raises(PolicyRuntimeError, match=r"policy\.lua:1: get_listener_domain returned"):
        policy.get_listener_domain("x.org", "127.0.0.1:25", {})
    with pytest.raises(PolicyRuntimeError, match=r"policy\.lua:2: no database"):
        policy.get_listener_domain("fail.org", "127.0.0.1:25", {})


@pytest.mark.parametrize(
    ("domain", "listener", "expected"),
    [
        ("example.com", "10.0.0.1:25", ListenerDomain(relay_to=True)),
        ("Example.COM", "10.0.0.1:25", ListenerDomain(relay_to=True)),
        (
            "bounce.example.com",
            "10.0.0.1:25",
            ListenerDomain(log_oob=ReportHandling.LOG_THEN_RELAY),
        ),
        ("fbl.example.com", "10.0.0.1:25", ListenerDomain(log_arf=ReportHandling.LOG_THEN_DROP)),
        (
            "send.example.com",
            "10.0.0.1:25",
            ListenerDomain(relay_from=(ipaddress.ip_network("10.0.0.0/24"),)),
        ),
        (
            "mx.example.com",
            "10.0.0.1:25",
            ListenerDomain(
                relay_to=True,
                log_oob=ReportHandling.LOG_THEN_RELAY,
                log_arf=ReportHandling.LOG_THEN_RELAY,
            ),
        ),
        ("www.example.com", "10.0.0.1:25", ListenerDomain(relay_to=False)),
        # The listener's own entry comes first.
        ("mx.example.com", "127.0.0.1:25", ListenerDomain(relay_to=True)),
        ("auth-send.example.com", "10.0.0.1:25", ListenerDomain()),
        ("example.org", "10.0.0.1:25", None),
    ],
)
def test_the_helper_finds_the_entry_for_the_listener_then_any_listener(
    tmp_path: Path, domain: str, listener: str, expected: ListenerDomain | None
) -> None:
    assert helper_policy(tmp_path).get_listener_domain(domain, listener, CONN) == expected


def test_relay_from_authz_lets_the_authenticated_client_relay_from_its_address(
    tmp_path: Path,
) -> None:
    policy = helper_policy(tmp_path)
    for identity in ("authz_id", "authn_id"):
        got = policy.get_listener_domain(
            "auth-send.example.com", "10.0.0.1:25", {**CONN, identity: "username1"}
        )
        assert got == ListenerDomain(relay_from=(ipaddress.ip_network("10.9.8.7/32"),))
    other = policy.get_listener_domain(
        "auth-send.example.com", "10.0.0.1:25", {**CONN, "authn_id": "someone"}
    )
    assert other == ListenerDomain()


def test_a_star_entry_answers_for_every_other_domain(tmp_path: Path) -> None:
    policy = helper_policy(
        tmp_path, "['*']\nrelay_to = true\n['somewhere.com']\nrelay_to = false\n"
    )
    assert policy.get_listener_domain("any.org", "l:25", CONN) == ListenerDomain(relay_to=True)
    assert policy.get_listener_domain("somewhere.com", "l:25", CONN) == ListenerDomain()


@pytest.mark.parametrize(
    ("toml", "error"),
    [
        (
            '[listener."127.0.0.1:25"."*.example.com"]\nlog_arf = "yes"\n',
            "listener_domains.toml: listener.'127.0.0.1:25'.'*.example.com': "
            "kumo.make_listener_domain: bad value for field 'log_arf'",
        ),
        (
            "['a.com']\nrelay = true\n",
            "listener_domains.toml: 'a.com': kumo.make_listener_domain: unknown field",
        ),
        ("['a.com']\nrelay_from_authz = 'me'\n", "'a.com'.relay_from_authz: expected a list"),
    ],
)
def test_bad_data_stops_the_policy_load(tmp_path: Path, toml: str, error: str) -> None:
    with pytest.raises(PolicyLoadError) as caught:
        helper_policy(tmp_path, toml)
    assert str(caught.value).startswith("init.lua:5: policy-extras.listener_domains: ")
    assert error in str(caught.value)


def test_domains_compare_as_queue_names_spell_them(tmp_path: Path) -> None:
    policy = helper_policy(
        tmp_path, "['Bücher.de']\nrelay_to = true\n['*.Ünï.org']\nlog_oob = true\n"
    )
    relay = ListenerDomain(relay_to=True)
    assert policy.get_listener_domain("xn--bcher-kva.de", "l:25", CONN) == relay
    assert policy.get_listener_domain("BÜCHER.de", "l:25", CONN) == relay
    oob = ListenerDomain(log_oob=ReportHandling.LOG_THEN_RELAY)
    assert policy.get_listener_domain("mx.ünï.org", "l:25", CONN) == oob


def test_get_listener_domain_takes_one_handler_as_in_kumomta() -> None:
    with pytest.raises(PolicyLoadError) as caught:
        policy_from_source(
            "kumo.on('get_listener_domain', function() end)\n"
            "kumo.on('get_listener_domain', function() end)\n",
            "policy.lua",
        )
    assert str(caught.value) == (
        "policy.lua:2: get_listener_domain event already has a handler defined at policy.lua:1"
    )
