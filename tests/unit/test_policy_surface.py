"""The edges of the kumo namespace: KumoMTA functions refused here fail with their reason, an
unknown kumo.xyz names itself, tuning calls are accepted with one log line, and `require
'kumo.NAME'` gives a namespace."""

from __future__ import annotations

import logging

import pytest
from lua_policy_eval import error_of, value_of

from relaystream.core.policy import PolicyLoadError, policy_from_source
from relaystream.core.policy.kumo_surface import CONFIGURATION_ELSEWHERE, REFUSED


@pytest.mark.parametrize(
    ("call", "refused"),
    [
        ("kumo.http.build_client {}", "http"),
        ("kumo.amqp.build_client 'amqp://x'", "amqp"),
        ("kumo.nats.connect {}", "nats"),
        ("kumo.kafka.build_producer {}", "kafka"),
        ("kumo.fs.glob '/etc/*'", "fs"),
        ("kumo.glob '/etc/*'", "glob"),
        ("kumo.read_dir '/etc'", "read_dir"),
        ("kumo.secrets.load { vault_path = 'x' }", "secrets"),
        ("kumo.spf.check_host('example.com', {})", "spf"),
        ("kumo.xfer.xfer {}", "xfer"),
        ("kumo.aaa.load_acl_map 'acl.toml'", "aaa"),
        ("kumo.spawn_task { event_name = 'my.task' }", "spawn_task"),
        ("kumo.jsonl.new_tailer {}", "jsonl"),
        ("kumo.api.inject.inject_v1 {}", "api"),
        ("kumo.mimepart.new_text_plain('x')", "mimepart"),
        ("kumo.file_type.from_extension 'pdf'", "file_type"),
    ],
)
def test_a_refused_kumomta_function_names_itself_and_why_at_the_line(
    call: str, refused: str
) -> None:
    name = call.split(" ")[0].split("(")[0]
    assert error_of(call) == (
        f"policy.lua:3: {name}: not available in relaystream: {REFUSED[refused]}"
    )


def test_a_refusal_in_init_fails_the_load_at_its_line() -> None:
    with pytest.raises(PolicyLoadError) as caught:
        policy_from_source(
            "local kumo = require 'kumo'\n"
            "kumo.on('init', function()\n"
            "  kumo.spawn_task { event_name = 'poll' }\n"
            "end)\n",
            "init.lua",
        )
    assert str(caught.value) == (
        f"init.lua:3: kumo.spawn_task: not available in relaystream: {REFUSED['spawn_task']}"
    )


@pytest.mark.parametrize(
    ("call", "error"),
    [
        ("kumo.xyz()", "attempt to call a nil value (field 'xyz')"),
        ("kumo.xyz.abc {}", "attempt to index a nil value (field 'xyz')"),
        ("kumo.string.nope 'x'", "attempt to call a nil value (field 'nope')"),
    ],
)
def test_an_unknown_kumo_function_is_nil_as_in_kumomta(call: str, error: str) -> None:
    # Nil, not a stand-in: a policy may test for a function (`if kumo.x then`), and Lua's
    # error names the field.
    assert error_of(call) == f"policy.lua:3: {error}"
    assert value_of("kumo.xyz == nil and kumo.string.nope == nil")


def test_known_functions_and_values_are_untouched_by_the_guard() -> None:
    assert value_of("type(kumo.string.split) == 'function' and rawget(kumo, 'nope') == nil")


def test_require_kumo_name_gives_the_namespace_or_the_refusal() -> None:
    assert value_of(
        "require 'kumo.string' == kumo.string and require 'kumo.dns' == kumo.dns"
        " and require 'kumo.time' == kumo.time and require 'kumo.regex' == kumo.regex"
    )
    assert error_of("require 'kumo.http'") == (
        f"policy.lua:3: require 'kumo.http': not available in relaystream: {REFUSED['http']}"
    )
    assert error_of("require 'kumo.nothing'") == (
        "policy.lua:3: require 'kumo.nothing': no such module in relaystream"
    )


@pytest.mark.parametrize(
    "name",
    [
        "set_smtpsrv_threads",
        "set_memory_hard_limit",
        "dns.set_mx_timeout",
        "aaa.configure_acct_log",
        "set_diagnostic_log_filter",
    ],
)
def test_a_tuning_call_in_init_is_accepted_with_one_log_line(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "relaystream.policy")
    policy_from_source(
        f"kumo.on('init', function()\n  kumo.{name}(4)\n  kumo.{name}(5)\nend)\n", "init.lua"
    )
    assert [r.getMessage() for r in caplog.records if r.name == "relaystream.policy"] == [
        f"init.lua:2: kumo.{name}: accepted, no effect in relaystream: "
        f"{CONFIGURATION_ELSEWHERE[name]}"
    ]


def test_refusals_and_accepted_calls_do_not_overlap() -> None:
    top_level_refused = {name for name in REFUSED if "." not in name}
    assert not {name.split(".")[0] for name in CONFIGURATION_ELSEWHERE if "." not in name} & (
        top_level_refused
    )
