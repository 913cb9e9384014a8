"""Delivery's egress resolution (delivery/egress.py): pool, weighted round-robin source and
egress path config per (source, site) from a real Lua policy, cached as KumoMTA caches them,
and never a default when the policy fails."""

from __future__ import annotations

from collections import Counter

import pytest

from relaystream.core.domain.egress import Tls
from relaystream.core.domain.egress_source import UNSPECIFIED
from relaystream.core.policy import Policy, policy_from_source
from relaystream.core.runtime.settings import DeliverySettings
from relaystream.delivery.egress import (
    EgressDefaults,
    EgressPath,
    EgressResolver,
    EgressUnavailable,
)
from relaystream.delivery.tls import TlsMode

POOLS = """
local kumo = require 'kumo'
CALLS = 0
kumo.on('get_egress_pool', function(name)
  if name == 'pool-a' then
    return kumo.make_egress_pool { name = name, entries = {
      { name = 'ip-2', weight = 2 }, { name = 'ip-3', weight = 1 } } }
  end
  error('no pool ' .. name)
end)
kumo.on('get_egress_source', function(name)
  local addr = { ['ip-2'] = '127.0.0.2', ['ip-3'] = '127.0.0.3' }
  return kumo.make_egress_source { name = name, source_address = addr[name],
    ehlo_domain = name .. '.example', remote_port = name == 'ip-3' and 2600 or nil }
end)
kumo.on('get_egress_path_config', function(domain, source, site)
  CALLS = CALLS + 1
  if site == 'broken.site' then error('no path for ' .. site) end
  if site == 'rejected.site' then kumo.reject(421, 'not today') end
  return kumo.make_egress_path {
    connection_limit = CALLS, enable_tls = 'Required', max_message_rate = '20/s',
    smtp_port = 2525, refresh_interval = '10s',
    ehlo_domain = site == 'named.site' and 'path.example' or nil,
  }
end)
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def defaults(**settings: object) -> EgressDefaults:
    return EgressDefaults.from_settings(
        DeliverySettings(**{"ehlo_name": "settings.example", **settings})  # type: ignore[arg-type]
    )


def resolver(policy: Policy | None, clock: Clock | None = None) -> EgressResolver:
    return EgressResolver(policy, defaults(smtp_port=2526), clock or Clock())


def test_sources_follow_the_pools_weights() -> None:
    egress = resolver(policy_from_source(POOLS, "policy.lua"))
    picked = [egress.choose_source("pool-a").source.name for _ in range(300)]
    assert Counter(picked) == {"ip-2": 200, "ip-3": 100}
    choice = egress.choose_source("pool-a")
    assert choice.pool == "pool-a"
    assert str(choice.source.source_address) in ("127.0.0.2", "127.0.0.3")


def test_no_pool_is_the_unspecified_source_with_the_settings_address() -> None:
    egress = EgressResolver(None, defaults(source_address="127.0.0.5"))
    choice = egress.choose_source(None)
    assert (choice.pool, choice.source.name) == (UNSPECIFIED, UNSPECIFIED)
    assert str(choice.source.source_address) == "127.0.0.5"


def test_path_config_is_cached_per_source_and_site_until_its_refresh_interval() -> None:
    clock = Clock()
    egress = resolver(policy_from_source(POOLS, "policy.lua"), clock)
    source = egress.choose_source("pool-a").source
    first = egress.path("example.com", source, "mx.example")
    assert first.limits.connection_limit == 1
    assert egress.path("other.example", source, "mx.example") is first
    # Another site is asked for on its own.
    assert egress.path("example.com", source, "mx.other").limits.connection_limit == 2
    clock.now += 9.9
    assert egress.path("example.com", source, "mx.example") is first
    clock.now += 0.2
    assert egress.path("example.com", source, "mx.example").limits.connection_limit == 3


def test_the_path_config_becomes_session_options_limits_and_address_rules() -> None:
    egress2 = resolver(policy_from_source(POOLS, "policy.lua"))
    sources = {
        choice.source.name: choice.source
        for choice in (egress2.choose_source("pool-a") for _ in range(3))
    }
    ip2, ip3 = sources["ip-2"], sources["ip-3"]
    path = egress2.path("example.com", ip2, "mx.example")
    assert path.config.enable_tls is Tls.REQUIRED
    assert path.options.tls_mode is TlsMode.REQUIRED
    assert path.options.source_address == "127.0.0.2"
    assert path.options.ehlo_name == "ip-2.example"  # the source's, the path names none
    assert path.rules.default_port == 2525
    assert path.limits.message_rate is not None
    assert (path.limits.message_rate.limit, path.limits.message_rate.period_ms) == (20, 1000)
    # The source's remote_port wins over smtp_port; the path's ehlo_domain over the source's.
    assert egress2.path("example.com", ip3, "mx.example").rules.default_port == 2600
    assert egress2.path("example.com", ip2, "named.site").options.ehlo_name == "path.example"


@pytest.mark.parametrize(
    ("site", "reason"), [("broken.site", "no path for broken.site"), ("rejected.site", "reject")]
)
def test_a_failing_or_rejecting_path_handler_holds_the_message(site: str, reason: str) -> None:
    egress = resolver(policy_from_source(POOLS, "policy.lua"))
    source = egress.choose_source("pool-a").source
    with pytest.raises(EgressUnavailable) as caught:
        egress.path("example.com", source, site)
    response = caught.value.response
    assert (response.code, str(response.enhanced_code)) == (451, "4.3.0")
    assert reason in response.content
    # Not cached as a default: asked again (and failing again) next time.
    with pytest.raises(EgressUnavailable):
        egress.path("example.com", source, site)


def test_an_unknown_pool_holds_the_message() -> None:
    egress = resolver(policy_from_source(POOLS, "policy.lua"))
    with pytest.raises(EgressUnavailable) as caught:
        egress.choose_source("pool-b")
    assert "no pool pool-b" in caught.value.response.content
    with pytest.raises(EgressUnavailable):
        resolver(None).choose_source("pool-b")


def test_without_a_path_handler_the_settings_are_the_defaults() -> None:
    policy = policy_from_source("local kumo = require 'kumo'\n", "policy.lua")
    settings = defaults(smtp_port=2526, connection_limit=7, tls_mode="Disabled")
    egress = EgressResolver(policy, settings)
    source = egress.choose_source(None).source
    path = egress.path("example.com", source, "mx.example")
    assert path == EgressPath.derive(source, settings.path, settings)
    assert (path.rules.default_port, path.limits.connection_limit) == (2526, 7)
    assert path.options.tls_mode is TlsMode.DISABLED
    assert path.options.ehlo_name == "settings.example"


def test_a_path_field_delivery_does_not_apply_is_warned_about_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    policy = policy_from_source(
        "local kumo = require 'kumo'\n"
        "kumo.on('get_egress_path_config', function(domain, source, site)\n"
        "  return kumo.make_egress_path { additional_connection_limits = { everything = 10 },\n"
        "    connection_limit = 5 }\n"
        "end)\n",
        "policy.lua",
    )
    egress = resolver(policy)
    source = egress.choose_source(None).source
    with caplog.at_level("WARNING", logger="relaystream.delivery.egress"):
        for site in ("mx.one", "mx.two"):
            assert egress.path("example.com", source, site).limits.connection_limit == 5
    warned = [r for r in caplog.records if "not applied" in r.getMessage()]
    assert [getattr(r, "field", None) for r in warned] == ["additional_connection_limits"]
