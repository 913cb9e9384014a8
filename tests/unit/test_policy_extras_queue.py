"""policy-extras.queue: a KumoMTA init.lua with its queues.toml routes here as in KumoMTA. The
tenant and campaign it sets name the scheduled queue; the fields of default, domain, tenant,
domain+tenant and campaign sections, most specific winning, are the queue's config."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relaystream.core.domain.queue_config import QueueConfig
from relaystream.core.domain.queue_name import QueueName
from relaystream.core.policy import (
    Policy,
    PolicyLimits,
    PolicyLoadError,
    PolicyMessage,
    PolicyRejected,
    policy_from_file,
    policy_from_source,
)
from relaystream.core.policy.routing_rule import RefusedMessage, RoutedMessage, route_message

QUEUES_TOML = """
tenant_header = "X-Tenant"
campaign_header = "X-Campaign"
default_tenant = "default-tenant"

[tenant.'default-tenant']
egress_pool = 'pool-0'

[tenant.'mytenant']
egress_pool = 'pool-1'
max_age = '10 hours'

[tenant.'secure']
require_authz = ['daniel']

[queue.default]
max_age = '24 hours'

[queue.'my.own.hostname']
routing_domain = '[10.0.0.1]'

[queue.'gmail.com']
max_age = '22 hours'
retry_interval = '17 mins'

[queue.'gmail.com'.'mytenant']
retry_interval = '5 mins'

[queue.'gmail.com'.'mytenant'.'welcome-campaign']
egress_pool = 'pool-9'

[queue.'*.example.net']
retry_interval = '3 mins'
"""

# The policy as KumoMTA's queue-management guide writes it.
INIT_LUA = """
local kumo = require 'kumo'
local queue_module = require 'policy-extras.queue'
local queue_helper = queue_module:setup { 'queues.toml' }

kumo.on('smtp_server_message_received', function(msg)
  queue_helper:apply(msg)
end)

kumo.on('http_message_generated', function(msg)
  queue_helper:apply(msg)
end)
"""


def load(tmp_path: Path, init: str = INIT_LUA, files: dict[str, str] | None = None) -> Policy:
    """Loads `init` as tmp_path/init.lua with its data `files` (name: text) beside it."""
    for name, text in (files or {}).items():
        (tmp_path / name).write_text(text)
    (tmp_path / "init.lua").write_text(init)
    return policy_from_file(tmp_path / "init.lua")


def routed(
    policy: Policy, recipient: str, headers: str = "", meta: dict[str, object] | None = None
) -> RoutedMessage | RefusedMessage:
    message = PolicyMessage("m-1", "alice@example.org", recipient, dict(meta or {}), headers)
    return route_message(policy, "ESMTP", message)


def queue_config(policy: Policy, queue: str) -> QueueConfig:
    """The config scheduling gives the queue: the policy's fields over the defaults."""
    name = QueueName.parse(queue)
    fields = policy.get_queue_config(name.domain, name.tenant, name.campaign, name.routing_domain)
    return QueueConfig() if fields is None else QueueConfig.from_mapping(fields)


def test_tenant_and_campaign_headers_name_the_queue_and_the_most_specific_section_wins(
    tmp_path: Path,
) -> None:
    policy = load(tmp_path, files={"queues.toml": QUEUES_TOML})
    headers = "X-Tenant: mytenant\r\nX-Campaign: welcome-campaign\r\n"
    result = routed(policy, "bob@Gmail.com", headers)
    assert isinstance(result, RoutedMessage), result
    assert result.queue == "welcome-campaign:mytenant@gmail.com"
    config = queue_config(policy, result.queue)
    assert config.egress_pool == "pool-9"  # campaign over tenant
    assert config.retry_interval == timedelta(minutes=5)  # domain+tenant over domain
    assert config.max_age == timedelta(hours=10)  # tenant over domain over default


def test_default_tenant_routing_domain_and_wildcard_domains(tmp_path: Path) -> None:
    policy = load(tmp_path, files={"queues.toml": QUEUES_TOML})
    result = routed(policy, "bob@my.own.hostname")
    assert isinstance(result, RoutedMessage), result
    assert result.meta_after["tenant"] == "default-tenant"
    assert result.queue == "default-tenant@my.own.hostname![10.0.0.1]"
    assert queue_config(policy, result.queue).egress_pool == "pool-0"

    # '*.example.net' matches names below example.net, not example.net itself.
    assert queue_config(policy, "mx.a.example.net").retry_interval == timedelta(minutes=3)
    assert queue_config(policy, "example.net").retry_interval == QueueConfig().retry_interval
    assert queue_config(policy, "example.net").max_age == timedelta(hours=24)


def test_a_tenant_not_in_the_data_is_rejected_as_in_kumomta(tmp_path: Path) -> None:
    policy = load(tmp_path, files={"queues.toml": QUEUES_TOML})
    result = routed(policy, "bob@gmail.com", "X-Tenant: nobody\r\n")
    assert isinstance(result, RefusedMessage)
    assert result.rejection == PolicyRejected(
        500, "tenant 'nobody' specified by 'X-Tenant' header is not defined in your queue config"
    )


@pytest.mark.parametrize(
    ("meta", "refusal"),
    [
        ({}, "tenant 'secure' requires SMTP AUTH"),
        (
            {"authn_id": "mallory"},
            "authz_id 'mallory' is not authorized to send as tenant 'secure'",
        ),
        ({"authz_id": "daniel"}, None),
        ({"authn_id": "daniel"}, None),
    ],
)
def test_require_authz_lets_only_the_listed_identities_use_the_tenant(
    tmp_path: Path, meta: dict[str, object], refusal: str | None
) -> None:
    policy = load(tmp_path, files={"queues.toml": QUEUES_TOML})
    result = routed(policy, "bob@gmail.com", "X-Tenant: secure\r\n", meta)
    if refusal is None:
        assert isinstance(result, RoutedMessage), result
        assert result.queue == "secure@gmail.com"
    else:
        assert isinstance(result, RefusedMessage)
        assert result.rejection == PolicyRejected(500, refusal)


def test_files_and_inline_tables_merge_in_order_later_ones_winning(tmp_path: Path) -> None:
    init = """
local queue_module = require 'policy-extras.queue'
local helper = queue_module:setup_with_options {
  file_names = {
    'base.json',
    { queues = { ['gmail.com'] = { max_age = '6 hours', mytenant = { egress_pool = 'inline' } } },
      tenants = { mytenant = {} } },
  },
}
"""
    base = """{
  // comments are allowed in JSON data, as in KumoMTA
  "tenant": {"mytenant": {"egress_pool": "tpool"}},
  "queue": {"gmail.com": {"max_age": "1 hour", "retry_interval": "2 mins"}}
}"""
    policy = load(tmp_path, init, files={"base.json": base})
    config = queue_config(policy, "mytenant@gmail.com")
    assert config.max_age == timedelta(hours=6)
    assert config.retry_interval == timedelta(minutes=2)
    assert config.egress_pool == "inline"
    assert queue_config(policy, "mytenant@other.org").egress_pool == "tpool"


def test_no_section_for_a_queue_leaves_it_to_the_defaults(tmp_path: Path) -> None:
    policy = load(tmp_path, files={"queues.toml": '[queue."gmail.com"]\nmax_age = "1h"\n'})
    assert policy.get_queue_config("example.org", None, None, None) is None


def test_resolve_config_and_skip_queue_config_hook(tmp_path: Path) -> None:
    init = """
local queue_module = require 'policy-extras.queue'
local helper = queue_module:setup_with_options {
  file_names = { 'queues.toml' },
  skip_queue_config_hook = true,
}
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  local fields = helper:resolve_config(domain, tenant, campaign)
  fields.max_retry_interval = '2 hours'
  return kumo.make_queue_config(fields)
end)
"""
    policy = load(tmp_path, init, files={"queues.toml": QUEUES_TOML})
    config = queue_config(policy, "mytenant@gmail.com")
    assert config.max_retry_interval == timedelta(hours=2)
    assert config.egress_pool == "pool-1"


@pytest.mark.parametrize(
    ("toml", "error"),
    [
        ("tenant_headr = 'X-Tenant'\n", "queues.toml: tenant_headr: unknown key (known: queue,"),
        ("tenant_header = 1\n", "queues.toml: tenant_header: expected a string, got a number"),
        (
            "[queue.'gmail.com']\nmax_age = 'soon'\n",
            "queues.toml: queue.'gmail.com'.max_age: bad value for field 'max_age'",
        ),
        (
            "[queue.'gmail.com']\nmax_ag = '1h'\n",
            "queues.toml: queue.'gmail.com'.max_ag: not a queue config field (nor a tenant "
            "section, which is a table)",
        ),
        (
            "[queue.'gmail.com'.t.c]\nfoo = {}\n",
            "queues.toml: queue.'gmail.com'.t.c.foo: not a queue config field",
        ),
        (
            "[tenant.t]\nrequire_authz = 'daniel'\n",
            "queues.toml: tenant.t.require_authz: expected a list of strings, got a string",
        ),
        ("[tenant.t]\nwho = 1\n", "queues.toml: tenant.t.who: not a queue config field"),
        ("[queue\n", "queues.toml: invalid TOML"),
    ],
)
def test_bad_data_stops_the_policy_load_naming_the_setup_line_the_file_and_the_key(
    tmp_path: Path, toml: str, error: str
) -> None:
    with pytest.raises(PolicyLoadError) as caught:
        load(tmp_path, files={"queues.toml": toml})
    text = str(caught.value)
    assert text.startswith("init.lua:4: policy-extras.queue: "), text
    assert error in text


def test_a_missing_file_and_a_second_setup_are_errors(tmp_path: Path) -> None:
    with pytest.raises(PolicyLoadError, match=r"init\.lua:4: policy-extras\.queue: cannot read /"):
        load(tmp_path)
    twice = "local q = require 'policy-extras.queue'\nq:setup {{}}\nq:setup {{}}\n"
    with pytest.raises(PolicyLoadError, match=r"init\.lua:3: queues module has already been"):
        load(tmp_path, twice)


def test_what_relaystream_does_not_do_is_warned_once_and_not_applied(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "relaystream.policy")
    toml = (
        "[queue.default]\nstrategy = 'SingletonTimerWheelV2'\nretry_interval = '5m'\n"
        "[tenant.t]\noverall_max_message_rate = '100/s'\n"
        "[tenant.t.campaigns.c]\nmax_age = '1h'\n"
    )
    policy = load(tmp_path, files={"queues.toml": toml})
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 3, warnings
    assert "queue.default.strategy is a KumoMTA in-memory queue tuning field" in warnings[0]
    assert "tenant.t.overall_max_message_rate = '100/s' is not enforced" in warnings[1]
    assert "the queue config fields of tenant.t.campaigns.c do not apply" in warnings[2]
    assert policy.get_queue_config("x.org", "t", "c", None) == {"retry_interval": "5m"}


@settings(max_examples=40, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            layer: st.integers(min_value=1, max_value=99)
            for layer in ("default", "domain", "tenant", "domain_tenant", "campaign")
        },
    )
)
def test_the_most_specific_section_that_sets_a_field_gives_it(
    tmp_path_factory: pytest.TempPathFactory, minutes: dict[str, int]
) -> None:
    sections = {
        "default": "[queue.default]",
        "domain": "[queue.'d.com']",
        "tenant": "[tenant.t]",
        "domain_tenant": "[queue.'d.com'.t]",
        "campaign": "[queue.'d.com'.t.c]",
    }
    toml = "".join(
        f"{sections[layer]}\nretry_interval = '{value}m'\n" for layer, value in minutes.items()
    )
    # Sections exist even when they set nothing, so that tenant and campaign are defined.
    toml += "[tenant.t.campaigns.c]\n" if "tenant" in minutes else "[tenant.t]\n"
    policy = load(tmp_path_factory.mktemp("q"), files={"queues.toml": toml})
    most_specific = [minutes[layer] for layer in sections if layer in minutes]
    expected = timedelta(minutes=most_specific[-1]) if most_specific else None
    fields = policy.get_queue_config("d.com", "t", "c", None)
    got = None if fields is None else QueueConfig.from_mapping(fields).retry_interval
    assert got == expected


def test_domains_compare_as_queue_names_spell_them(tmp_path: Path) -> None:
    toml = "[queue.'Bücher.de']\nrouting_domain = '[10.0.0.2]'\nretry_interval = '2m'\n"
    policy = load(tmp_path, files={"queues.toml": toml})
    result = routed(policy, "bob@BÜCHER.de")
    assert isinstance(result, RoutedMessage), result
    assert result.queue == "xn--bcher-kva.de![10.0.0.2]"
    assert queue_config(policy, result.queue).retry_interval == timedelta(minutes=2)


def test_a_setup_that_runs_out_of_budget_says_so_rather_than_blaming_the_data() -> None:
    endless = "setmetatable({}, {__pairs = function() while true do end end})"
    source = f"local q = require 'policy-extras.queue'\nq:setup {{ {endless} }}\n"
    with pytest.raises(PolicyLoadError) as caught:
        policy_from_source(source, "init.lua", PolicyLimits(instruction_budget=200_000))
    assert str(caught.value).startswith("init.lua:2: instruction budget of 200000 exceeded")
