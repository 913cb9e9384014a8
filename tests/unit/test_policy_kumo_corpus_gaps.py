"""What KumoMTA's own example and doc policies needed beyond the namespaces: `kumo.json_encode`
of nil, `os.tmpname`, `kumo.configure_log_hook`, clear refusals of the modules and delivery
protocols relaystream has no counterpart for, and `relaystream route` giving the policy a whole
message (so msg:from_header() and the methods that change the message work there)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from relaystream.cli.main import main
from relaystream.core.domain.log_hook import LogHookDeclaration, LogHookKind
from relaystream.core.domain.queue_config import QueueConfig, QueueConfigError, merge_overrides
from relaystream.core.policy import (
    PolicyAccepted,
    PolicyLoadError,
    PolicyMessage,
    policy_from_source,
)

MESSAGE = PolicyMessage("msg-1", "alice@example.org", "bob@example.com", {})


def meta_after(body: str) -> dict[str, object]:
    source = (
        "local kumo = require 'kumo'\n"
        "kumo.on('smtp_server_message_received', function(msg)\n" + body + "\nend)\n"
    )
    result = policy_from_source(source, "policy.lua").on_message_received("ESMTP", MESSAGE)
    assert isinstance(result, PolicyAccepted), result
    return dict(result.meta)


def test_nil_encodes_as_json_null_as_in_kumomta() -> None:
    # What ndr.lua does with msg:import_scheduling_header when the header is absent.
    meta = meta_after(
        "msg:set_meta('a', kumo.json_encode(nil))\n"
        "msg:set_meta('b', kumo.serde.json_encode(nil))\n"
        "msg:set_meta('c', kumo.serde.json_encode_pretty(nil))\n"
        "msg:set_meta('d', kumo.serde.json_encode(msg:import_scheduling_header('X-Schedule')))"
    )
    assert meta == {"a": "null", "b": "null", "c": "null", "d": "null"}


def test_tmpname_names_a_path_no_file_can_have() -> None:
    meta = meta_after("msg:set_meta('a', os.tmpname())\nmsg:set_meta('b', os.tmpname())")
    names = [meta["a"], meta["b"]]
    assert names[0] != names[1]
    for name in names:
        assert isinstance(name, str) and name.startswith("/dev/null/")
        # /dev/null is not a directory: nothing can create a file there.
        with pytest.raises(NotADirectoryError):
            Path(name).write_text("x")


@pytest.mark.parametrize(
    ("module", "reason"),
    [
        ("tsa", "traffic shaping automation daemon"),
        ("proxy", "SOCKS5 proxy server (kumo-proxy)"),
        ("sqlite", "no database from a policy"),
        ("redis", "no Redis from a policy"),
        ("policy-extras.hornet", "not one KumoMTA ships"),
    ],
)
def test_a_refused_module_is_named_with_its_reason_at_the_require_line(
    module: str, reason: str
) -> None:
    with pytest.raises(PolicyLoadError) as caught:
        policy_from_source(f"local kumo = require 'kumo'\nlocal m = require '{module}'\n", "p.lua")
    text = str(caught.value)
    assert text.startswith(f"p.lua:2: require '{module}': not available in relaystream: ")
    assert reason in text


def test_an_unknown_module_still_lists_what_may_be_required() -> None:
    with pytest.raises(PolicyLoadError, match=r"p\.lua:1: module 'nope' is not available.*allowed"):
        policy_from_source("require 'nope'\n", "p.lua")


@pytest.mark.parametrize(
    ("protocol", "reason"),
    [
        ({"maildir_path": "/var/tmp/sink"}, "delivers over SMTP only"),
        ({"custom_lua": {"constructor": "make.sink"}}, "runs no policy code"),
    ],
)
def test_a_non_smtp_delivery_protocol_is_refused_with_the_reason(
    protocol: dict[str, object], reason: str
) -> None:
    name = next(iter(protocol))
    with pytest.raises(QueueConfigError) as caught:
        merge_overrides(QueueConfig(), {"protocol": protocol})
    assert str(caught.value).startswith(f"protocol.{name}: not available in relaystream: ")
    assert reason in str(caught.value)


def test_configure_log_hook_declares_a_hook_and_says_it_does_not_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "relaystream.policy")
    policy = policy_from_source(
        "kumo.on('init', function()\n"
        "  kumo.configure_log_hook {\n"
        "    name = 'webhook', headers = { 'Subject' }, meta = { 'tenant' },\n"
        "  }\n"
        "end)\n",
        "init.lua",
    )
    assert policy.log_hooks == (
        LogHookDeclaration(
            LogHookKind.LUA,
            "webhook",
            log_parameters={"headers": ["Subject"], "meta": ["tenant"]},
            configured_by="kumo.configure_log_hook",
        ),
    )
    [warning] = [record.getMessage() for record in caplog.records]
    assert "log hook 'webhook' (kumo.configure_log_hook) is declared but not run" in warning


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ("{ headers = {} }", "kumo.configure_log_hook: name is required"),
        ("{ name = 'w', url = 'http://x/' }", "unknown parameter 'url' (known: back_pressure"),
        ("{ name = 'w', headers = 'Subject' }", "headers: expected a list of strings"),
        ("{ name = 'w', back_pressure = 0 }", "back_pressure: expected a positive integer"),
    ],
)
def test_a_bad_configure_log_hook_stops_the_load_at_its_line(params: str, error: str) -> None:
    with pytest.raises(PolicyLoadError) as caught:
        policy_from_source(
            f"local kumo = require 'kumo'\nkumo.configure_log_hook {params}\n", "p.lua"
        )
    assert str(caught.value).startswith("p.lua:2: kumo.configure_log_hook: "), caught.value
    assert error in str(caught.value)


CHANGING_POLICY = """
local kumo = require 'kumo'
kumo.on('smtp_server_message_received', function(msg)
  msg:set_meta('from_domain', msg:from_header().domain)
  msg:append_header('X-Seen', 'yes')
  msg:set_meta('seen', msg:get_first_named_header_value('X-Seen'))
  msg:set_meta('subject', msg:get_first_named_header_value('Subject'))
end)
"""


def route_meta(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    with pytest.raises(SystemExit) as exited:
        main(["route", *argv, "--sender", "alice@example.org", "--recipient", "bob@x.example",
              "--site-name", "x.example", "--json"])  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert exited.value.code == 0, report
    meta = report["meta"]
    assert isinstance(meta, dict)
    return meta


def test_route_gives_the_policy_a_whole_message_built_from_the_envelope(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "init.lua"
    policy.write_text(CHANGING_POLICY)
    meta = route_meta(capsys, "--policy", str(policy), "--header", "Subject: hello")
    assert meta == {"from_domain": "example.org", "seen": "yes", "subject": "hello"}


def test_route_reads_the_whole_message_from_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "init.lua"
    policy.write_text(CHANGING_POLICY)
    data = tmp_path / "message.eml"
    data.write_bytes(b"From: Carol <carol@sender.example>\r\nSubject: from file\r\n\r\nbody\r\n")
    meta = route_meta(capsys, "--policy", str(policy), "--data", str(data))
    assert meta == {"from_domain": "sender.example", "seen": "yes", "subject": "from file"}
