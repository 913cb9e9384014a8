"""policy-extras.rollup (MX host suffix and IP rollup, as KumoMTA's rollup guide uses them) and
the policy-extras modules relaystream refuses, each with its reason.

The rollup decisions are pure logic over kumo.dns answers: the policies below answer
kumo.dns.lookup_mx/lookup_addr themselves (no resolver, no network)."""

from __future__ import annotations

import logging

import pytest

from relaystream.core.domain.queue_config import QueueConfig
from relaystream.core.policy import (
    PolicyAccepted,
    PolicyLoadError,
    PolicyMessage,
    PolicyResult,
    policy_from_source,
)

# The MX answers of three domains, in kumo.dns.lookup_mx's shape.
DNS = """
local kumo = require 'kumo'
local rollup = require 'policy-extras.rollup'
local MX = {
  ['hotmail.com'] = { hosts = { 'hotmail-com.olc.protection.outlook.com.' },
    by_pref = { [2] = { 'hotmail-com.olc.protection.outlook.com.' } } },
  ['foo.com'] = { hosts = { 'foo-com.mail.protection.outlook.com.', 'backup.foo.com.' },
    by_pref = { [1] = { 'foo-com.mail.protection.outlook.com.' },
                [10] = { 'backup.foo.com.' } } },
  ['mixed.com'] = { hosts = { 'a.olc.protection.outlook.com.', 'mx.mixed.com.' },
    by_pref = { [1] = { 'a.olc.protection.outlook.com.', 'mx.mixed.com.' } } },
}
kumo.dns = {
  lookup_mx = function(domain)
    return MX[domain] or error('NXDOMAIN ' .. domain)
  end,
  lookup_addr = function(name)
    return { '104.47.25.36', '104.47.24.36' }
  end,
}
"""

POLICY = (
    DNS
    + """
kumo.on('smtp_server_message_received', function(msg)
  rollup.reroute_based_on_mx_host_suffix(msg, {
    ['.olc.protection.outlook.com.'] = 'outlook.com',
  })
  rollup.reroute_using_ip_rollup(msg, {
    ['.mail.protection.outlook.com.'] = 'outlook.ip_rollup',
  })
end)

kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  local params = {}
  rollup.apply_ip_rollup_to_queue_config(domain, routing_domain, params)
  return kumo.make_queue_config(params)
end)
"""
)


def received(recipient: str) -> PolicyResult:
    message = PolicyMessage("m-1", "alice@example.org", recipient, {})
    return policy_from_source(POLICY, "init.lua").on_message_received("ESMTP", message)


@pytest.mark.parametrize(
    ("recipient", "routing_domain"),
    [
        ("bob@hotmail.com", "outlook.com"),  # every MX host has the suffix
        ("bob@mixed.com", None),  # one does not
        ("bob@foo.com", "outlook.ip_rollup"),  # the most preferred ones have it
    ],
)
def test_rollup_sets_the_routing_domain_when_every_mx_host_matches(
    recipient: str, routing_domain: str | None
) -> None:
    result = received(recipient)
    assert isinstance(result, PolicyAccepted), result
    assert result.meta.get("routing_domain") == routing_domain


def test_a_failed_lookup_keeps_the_routing_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "relaystream.policy")
    result = received("bob@nowhere.example")
    assert isinstance(result, PolicyAccepted), result
    assert "routing_domain" not in result.meta
    assert any(
        "policy-extras.rollup: mx host suffix rollup failed, routing unchanged" in r.getMessage()
        and "NXDOMAIN nowhere.example" in r.getMessage()
        for r in caplog.records
    )


def test_an_ip_rollup_queue_goes_to_the_preferred_hosts_addresses_in_a_stable_order() -> None:
    policy = policy_from_source(POLICY, "init.lua")
    fields = policy.get_queue_config("foo.com", None, None, "outlook.ip_rollup")
    assert fields is not None
    config = QueueConfig.from_mapping(fields)
    assert config.mx_list_site_name == "mx_list:104.47.24.36,104.47.25.36"
    assert policy.get_queue_config("foo.com", None, None, None) == {}


@pytest.mark.parametrize(
    ("module", "reason"),
    [
        ("mail_auth", "it needs kumo.spf, kumo.dmarc, msg:dkim_verify and msg:arc_verify"),
        ("docker_utils", "it resolves Docker service names with getent"),
        ("typing", "it is the internal type checker of KumoMTA's own policy-extras modules"),
    ],
)
def test_modules_that_cannot_apply_are_refused_at_the_require_line(
    module: str, reason: str
) -> None:
    with pytest.raises(PolicyLoadError) as caught:
        policy_from_source(f"-- policy\nlocal m = require 'policy-extras.{module}'\n", "init.lua")
    assert str(caught.value).startswith(
        f"init.lua:2: policy-extras.{module} is not available in relaystream: {reason}"
    )
