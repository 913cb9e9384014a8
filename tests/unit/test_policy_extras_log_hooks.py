"""policy-extras.log_hooks: the hooks of KumoMTA's webhook guide are declared, checked, handed
to relaystream (Policy.log_hooks) and each is named in one warning saying what becomes of it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from relaystream.cli.main import main
from relaystream.core.domain.log_hook import LogHookDeclaration, LogHookKind
from relaystream.core.policy import PolicyLoadError, policy_from_source

HOOKS = """
local kumo = require 'kumo'
local log_hooks = require 'policy-extras.log_hooks'

log_hooks:new_json {
  name = 'webhook',
  url = 'http://10.0.0.1:4242/log',
  log_parameters = { headers = { 'Subject', 'X-Customer-ID' } },
}

log_hooks:new {
  name = 'webhookbatch',
  batch_size = 100,
  queue_config = { retry_interval = '1m', max_retry_interval = '20m' },
  constructor = function(domain, tenant, campaign)
    local connection = {}
    function connection:send_batch(messages) end
    return connection
  end,
}

log_hooks:new_disposition_hook {
  name = 'ndr_generator',
  hook = function(msg, log_record) end,
}
"""


def test_declared_hooks_reach_relaystream_and_each_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "relaystream.policy")
    policy = policy_from_source(HOOKS, "init.lua")
    assert policy.log_hooks == (
        LogHookDeclaration(
            LogHookKind.JSON,
            "webhook",
            url="http://10.0.0.1:4242/log",
            log_parameters={"headers": ["Subject", "X-Customer-ID"]},
        ),
        LogHookDeclaration(
            LogHookKind.LUA,
            "webhookbatch",
            queue_config={"retry_interval": "1m", "max_retry_interval": "20m"},
            batch_size=100,
        ),
        LogHookDeclaration(LogHookKind.DISPOSITION, "ndr_generator"),
    )
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 3
    assert warnings[0].startswith(
        "policy-extras.log_hooks: log hook 'webhook' (new_json, POST to "
        "http://10.0.0.1:4242/log): the services do not POST log records themselves; they are "
        "POSTed only while `relaystream log-hooks --policy FILE` runs"
    )
    assert warnings[1].startswith(
        "policy-extras.log_hooks: log hook 'webhookbatch' (new, with a Lua constructor) is "
        "declared but not run: relaystream runs no Lua log hook"
    )
    assert (
        "disposition hook 'ndr_generator' (new_disposition_hook) is declared but not run"
        in (warnings[2])
    )


@pytest.mark.parametrize(
    ("call", "error"),
    [
        ("new_json { name = 'w', url = 'http://x/', headers = {} }", "unknown option 'headers'"),
        ("new_json { name = 'w' }", "new_json: url is required"),
        ("new_json { name = 'w', url = 'ftp://x/' }", "url 'ftp://x/' must be an http:// or"),
        ("new_json { name = 'w w', url = 'http://x/' }", "name 'w w' must be letters"),
        (
            "new_json { name = 'w', url = 'http://x/', queue_config = { max_age = 'soon' } }",
            "queue_config.max_age: bad value for field 'max_age'",
        ),
        (
            "new_json { name = 'w', url = 'http://x/', queue_config = { max_ag = '1h' } }",
            "queue_config.max_ag: not a queue config field",
        ),
        ("new { name = 'w' }", "new: constructor is required"),
        ("new { name = 'w', constructor = print, batch_size = 0 }", "batch_size must be a posi"),
        ("new_disposition_hook { name = 'w', hook = 'f' }", "hook must be a function, got a"),
    ],
)
def test_a_bad_declaration_stops_the_load_at_its_line(call: str, error: str) -> None:
    with pytest.raises(PolicyLoadError) as caught:
        policy_from_source(
            f"local log_hooks = require 'policy-extras.log_hooks'\nlog_hooks:{call}\n", "init.lua"
        )
    assert str(caught.value).startswith("init.lua:2: policy-extras.log_hooks: "), caught.value
    assert error in str(caught.value)


def test_two_hooks_cannot_share_a_name() -> None:
    with pytest.raises(PolicyLoadError, match=r"init\.lua:3: log_hook with name 'w' has already"):
        policy_from_source(
            "local log_hooks = require 'policy-extras.log_hooks'\n"
            "log_hooks:new_json { name = 'w', url = 'http://x/' }\n"
            "log_hooks:new_disposition_hook { name = 'w', hook = print }\n",
            "init.lua",
        )


def test_log_hooks_command_needs_a_policy_with_a_json_hook(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "init.lua"
    policy.write_text(
        "local log_hooks = require 'policy-extras.log_hooks'\n"
        "log_hooks:new_disposition_hook { name = 'ndr', hook = print }\n"
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["log-hooks", "--policy", str(policy)])
    assert exit_info.value.code == 2
    assert "declares no new_json hook" in capsys.readouterr().err
    policy.write_text("local log_hooks = require 'policy-extras.log_hooks'\nlog_hooks:new {}\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["log-hooks", "--policy", str(policy)])
    assert exit_info.value.code == 2
    assert "init.lua:2: policy-extras.log_hooks: new: " in capsys.readouterr().err
