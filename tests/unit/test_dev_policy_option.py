"""`relaystream dev --policy FILE`: the operator's own policy reaches the services that route
with it. Checked without starting anything: the option, the early refusal of a policy that
does not load, and the settings file the services read, loaded the way they load it."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaystream.cli.main import build_parser
from relaystream.core.domain.queue_config import QueueConfig
from relaystream.core.domain.queue_name import QueueName
from relaystream.core.policy import PolicyMessage
from relaystream.core.policy.loader import service_policy
from relaystream.core.policy.routing_rule import RoutedMessage, route_message
from relaystream.core.runtime.settings import load_settings
from relaystream.routing.service import load_policy
from relaystream.scheduling.policy_adapter import policy_queue_config
from relaystream_devkit.commands.dev import dev_command
from relaystream_devkit.dev import DevPorts, sample_policy_path, write_dev_settings

# An operator's KumoMTA init.lua and its queues.toml, which sends one tenant to the dev sink.
INIT_LUA = """
local kumo = require 'kumo'
local queue_module = require 'policy-extras.queue'
local queue_helper = queue_module:setup { '/opt/kumomta/etc/policy/queues.toml' }
kumo.on('smtp_server_message_received', function(msg) queue_helper:apply(msg) end)
"""
QUEUES_TOML = """
tenant_header = "X-Tenant"
[tenant.acme]
egress_pool = "acme-pool"
[queue.default]
retry_interval = "1m"
[queue.'example.com']
routing_domain = "[127.0.0.1]:2526"
"""


def operator_policy(folder: Path) -> Path:
    folder.mkdir()
    (folder / "queues.toml").write_text(QUEUES_TOML)
    policy = folder / "init.lua"
    # Their data file beside the policy, named relative to it.
    policy.write_text(INIT_LUA.replace("/opt/kumomta/etc/policy/queues.toml", "queues.toml"))
    return policy


def test_the_option_names_the_policy_file() -> None:
    args = build_parser().parse_args(["dev", "--policy", "init.lua"])
    assert args.policy == Path("init.lua")
    assert args.handler is dev_command
    assert build_parser().parse_args(["dev"]).policy is None


def test_a_policy_that_does_not_load_stops_dev_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "init.lua"
    policy.write_text("local q = require 'policy-extras.queue'\nq:setup { 'missing.toml' }\n")
    state_dir = tmp_path / "state"
    args = build_parser().parse_args(
        ["dev", "--policy", str(policy), "--state-dir", str(state_dir)]
    )
    assert dev_command(args) == 2
    error = capsys.readouterr().err
    assert error.startswith("relaystream dev: the policy does not load: init.lua:2: ")
    assert "missing.toml" in error
    assert not state_dir.exists()  # run_dev creates it first: it never ran


def test_the_services_route_and_configure_queues_with_the_operators_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy_path = operator_policy(tmp_path / "policy")
    monkeypatch.chdir(tmp_path)  # the services may run anywhere: the path is absolute
    settings_path = write_dev_settings(tmp_path, "127.0.0.1:9092", DevPorts(), policy_path)
    settings = load_settings(settings_path, environ={})
    assert settings.routing.policy_path == policy_path.resolve()
    assert settings.scheduling.policy_path == policy_path.resolve()

    message = PolicyMessage("m-1", "me@example.org", "you@example.com", {}, "X-Tenant: acme\r\n")
    routed = route_message(load_policy(settings), "ESMTP", message)
    assert isinstance(routed, RoutedMessage), routed
    assert routed.queue == "acme@example.com![127.0.0.1]:2526"

    scheduling_policy = service_policy(settings, settings.scheduling.policy_path)
    config = policy_queue_config(scheduling_policy)(QueueName.parse(routed.queue))
    assert config == QueueConfig.from_mapping({"retry_interval": "1m", "egress_pool": "acme-pool"})


def test_without_the_option_the_sample_policy_is_used(tmp_path: Path) -> None:
    settings = load_settings(write_dev_settings(tmp_path, "127.0.0.1:9092", DevPorts()), {})
    assert settings.routing.policy_path == sample_policy_path().resolve()
