"""What a KumoMTA policy finds on its first lines: `require`, the safe part of `os`, the events
`kumo.on` takes (run, not run yet, misspelt) and `init`/`pre_init` with their configuration
calls."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relaystream.core.policy import (
    Policy,
    PolicyAccepted,
    PolicyFailed,
    PolicyLimits,
    PolicyLoadError,
    PolicyMessage,
    policy_from_source,
)
from relaystream.core.policy.kumo_surface import (
    CONFIGURATION_ELSEWHERE,
    NOT_RUN_EVENTS,
    RUN_EVENTS,
    EventKind,
    event_registration,
)
from relaystream.core.policy.lua_policy import EXTRAS_SOURCES

MESSAGE = PolicyMessage("msg-1", "alice@example.org", "bob@example.com", {})


def meta_after(policy: Policy) -> dict[str, object]:
    result = policy.on_message_received("ESMTP", MESSAGE)
    assert isinstance(result, PolicyAccepted), result
    return dict(result.meta)


def evaluate(expression: str) -> object:
    """The value of a Lua expression evaluated in a message handler."""
    policy = policy_from_source(
        "kumo.on('smtp_server_message_received', function(msg)\n"
        f"  msg:set_meta('x', {expression})\n"
        "end)\n",
        "policy.lua",
    )
    return meta_after(policy).get("x")


def failure(body: str) -> PolicyFailed:
    policy = policy_from_source(
        f"kumo.on('smtp_server_message_received', function(msg)\n{body}\nend)\n", "policy.lua"
    )
    result = policy.on_message_received("ESMTP", MESSAGE)
    assert isinstance(result, PolicyFailed), result
    return result


def policy_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "relaystream.policy" and r.levelno == logging.WARNING
    ]


# require


def test_require_kumo_gives_the_kumo_module() -> None:
    policy = policy_from_source(
        "local kumo = require 'kumo'\n"
        "local again = require('kumo')\n"
        "kumo.on('smtp_server_message_received', function(msg)\n"
        "  msg:set_meta('same', again == kumo and kumo == _G.kumo)\n"
        "end)\n",
        "policy.lua",
    )
    assert meta_after(policy) == {"same": True}


# What `require` allows: kumo, and the policy-extras modules relaystream ships.
ALLOWED_MODULES = ", ".join(["kumo", *(f"policy-extras.{name}" for name in sorted(EXTRAS_SOURCES))])


@pytest.mark.parametrize("name", ["foo", "policy-extras.no_such_module", "os", "string", "./init"])
def test_require_of_a_module_not_allowed_fails_at_load_at_its_line(name: str) -> None:
    with pytest.raises(PolicyLoadError) as caught:
        policy_from_source(
            f"-- policy\nlocal kumo = require 'kumo'\nlocal m = require '{name}'\n", "policy.lua"
        )
    assert str(caught.value) == (
        f"policy.lua:3: module '{name}' is not available in relaystream "
        f"(allowed: {ALLOWED_MODULES})"
    )


def test_require_needs_a_module_name() -> None:
    assert (
        "bad argument #1 to 'require' (string expected, got table)" in failure("require {}").message
    )


def test_package_path_is_a_string_nothing_searches_and_setting_it_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "helper.lua").write_text("return { x = 1 }\n")
    caplog.set_level(logging.INFO, "relaystream.policy")
    source = (
        "local kumo = require 'kumo'\n"
        f"package.path = '{tmp_path}/?.lua;' .. package.path\n"
        f"package.path = '{tmp_path}/?.lua;' .. package.path\n"
        "local path = package.path\n"
        "kumo.on('smtp_server_message_received', function(msg)\n"
        "  msg:set_meta('path', path)\n"
        "  msg:set_meta('found', pcall(require, 'helper'))\n"
        "end)\n"
    )
    policy = policy_from_source(source, "policy.lua")
    assert meta_after(policy) == {"path": f"{tmp_path}/?.lua;{tmp_path}/?.lua;", "found": False}
    assert policy_warnings(caplog) == [
        "policy.lua:2: package.path is not searched in relaystream: require gives only its "
        f"allow-listed modules ({ALLOWED_MODULES})"
    ]
    with pytest.raises(PolicyLoadError, match=r"^policy\.lua:2: module 'helper' is not available"):
        policy_from_source(
            f"package.path = '{tmp_path}/?.lua'\nlocal helper = require 'helper'\n", "policy.lua"
        )


def test_package_path_must_be_a_string() -> None:
    assert failure("package.path = {}").message == (
        "policy.lua:2: package.path must be a string, got a table"
    )


# os


def test_os_holds_only_the_safe_functions() -> None:
    policy = policy_from_source(
        "kumo.on('smtp_server_message_received', function(msg)\n"
        "  local names = {}\n"
        "  for name in pairs(os) do names[#names + 1] = name end\n"
        "  table.sort(names)\n"
        "  msg:set_meta('x', table.concat(names, ','))\n"
        "end)\n",
        "policy.lua",
    )
    # tmpname gives a name no file can have (test_policy_kumo_corpus_gaps.py).
    assert meta_after(policy)["x"] == "clock,date,getenv,time,tmpname"


@contextmanager
def environment(name: str, value: str) -> Iterator[None]:
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            del os.environ[name]
        else:
            os.environ[name] = previous


def test_os_getenv_reads_the_process_environment() -> None:
    with environment("POLICY_TEST_SINK_PORT", "2526"):
        assert evaluate("os.getenv 'POLICY_TEST_SINK_PORT'") == "2526"
    assert evaluate("os.getenv('POLICY_TEST_ABSENT') == nil") is True


@pytest.mark.parametrize(
    "name",
    ["RELAYSTREAM_INGEST_API_TOKENS", "RELAYSTREAM_SCHEDULING_ADMIN_API_TOKENS", "relaystream_x"],
)
def test_os_getenv_refuses_relaystreams_own_settings(name: str) -> None:
    with environment(name, "secret-token"):
        result = failure(f"msg:set_meta('x', os.getenv '{name}')")
    assert result.message == (
        f"policy.lua:2: os.getenv('{name}'): relaystream's own settings are not readable "
        "from a policy"
    )
    assert "secret-token" not in result.message + result.traceback


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_abc", min_size=1, max_size=20))
def test_os_getenv_is_the_environment_except_the_relaystream_prefix(suffix: str) -> None:
    for name in (f"POLICY_TEST_{suffix}", f"RELAYSTREAM_{suffix}"):
        with environment(name, "v"):
            policy = policy_from_source(
                f"kumo.on('smtp_server_message_received', function(msg)\n"
                f"  msg:set_meta('x', os.getenv('{name}'))\nend)\n",
                "policy.lua",
            )
            result = policy.on_message_received("ESMTP", MESSAGE)
        if name.startswith("RELAYSTREAM_"):
            assert isinstance(result, PolicyFailed)
            assert "not readable from a policy" in result.message
        else:
            assert result == PolicyAccepted({"x": "v"})


def test_os_getenv_needs_a_name() -> None:
    assert (
        "bad argument #1 to 'getenv' (string expected, got nil)" in failure("os.getenv()").message
    )


def test_os_time_is_the_current_epoch_second_and_converts_a_date() -> None:
    before = int(time.time())
    now = evaluate("os.time()")
    assert isinstance(now, int)
    assert before <= now <= int(time.time())
    # A table is local time in Lua; midday keeps the date the same under any time zone.
    noon = evaluate("os.time { year = 2024, month = 2, day = 29, hour = 12 }")
    assert isinstance(noon, int)
    assert time.localtime(noon)[:4] == (2024, 2, 29, 12)


def test_os_date_formats_and_splits_a_time() -> None:
    assert evaluate("os.date('!%Y-%m-%d %H:%M:%S', 86400 * 365)") == "1971-01-01 00:00:00"
    assert evaluate("os.date('!*t', 0).year") == 1970
    assert "invalid conversion specifier" in failure("os.date('%Ez')").message


def test_os_clock_is_processor_seconds() -> None:
    clock = evaluate("os.clock()")
    assert isinstance(clock, float)
    assert 0 <= clock <= time.process_time() + 1


# kumo.on: events run, not run yet, user-named, misspelt


def test_event_lists_do_not_overlap_and_every_run_event_is_a_kumomta_event() -> None:
    assert not RUN_EVENTS & NOT_RUN_EVENTS
    assert all(event_registration(name).kind is EventKind.RUN for name in RUN_EVENTS)


@pytest.mark.parametrize("event", sorted(NOT_RUN_EVENTS))
def test_a_kumomta_event_not_run_here_warns_once_at_load_and_its_handler_never_runs(
    event: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "relaystream.policy")
    # Registered twice, warned once.
    again = f"kumo.on('{event}', function() end)\n"
    policy = policy_from_source(
        "local kumo = require 'kumo'\n"
        f"kumo.on('{event}', function() error('ran') end)\n"
        f"{again}"
        "kumo.on('smtp_server_message_received', function(msg) msg:set_meta('x', 1) end)\n",
        "policy.lua",
    )
    assert policy_warnings(caplog) == [
        f"policy.lua:2: kumo.on('{event}'): relaystream does not run the KumoMTA event "
        f"'{event}' yet (issue 18); its handler is registered and never called"
    ]
    assert meta_after(policy) == {"x": 1}


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("smtp_server_mesage_received", "smtp_server_message_received"),
        ("get_queue_conf", "get_queue_config"),
        ("smtp_server_mail_rcpt_to", "smtp_server_rcpt_to"),
        ("Init", "init"),
        ("http_message_generate", "http_message_generated"),
    ],
)
def test_a_misspelt_kumomta_event_fails_at_load_with_file_and_line(name: str, meant: str) -> None:
    with pytest.raises(PolicyLoadError) as caught:
        policy_from_source(
            f"local kumo = require 'kumo'\nkumo.on('{name}', function() end)\n", "policy.lua"
        )
    assert str(caught.value) == (
        f"policy.lua:2: kumo.on('{name}'): no such KumoMTA event; did you mean '{meant}'?"
    )


@pytest.mark.parametrize("name", ["my.queue.task", "make.webhook", "fetch-my-domain-key"])
def test_a_user_named_event_warns_that_it_never_runs(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "relaystream.policy")
    policy_from_source(f"kumo.on('{name}', function() error('ran') end)\n", "policy.lua")
    assert policy_warnings(caplog) == [
        f"policy.lua:1: kumo.on('{name}'): '{name}' is not a KumoMTA event; taken as a "
        "user-named event, which KumoMTA fires from kumo.spawn_task (refused in relaystream: "
        "no background policy tasks) or from a log hook (kumo.configure_log_hook); "
        "relaystream never calls this handler otherwise"
    ]


def test_events_relaystream_runs_log_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "relaystream.policy")
    policy_from_source(
        "".join(f"kumo.on('{event}', function() end)\n" for event in sorted(RUN_EVENTS)),
        "policy.lua",
    )
    assert [r for r in caplog.records if r.name == "relaystream.policy"] == []


# init and pre_init


def test_pre_init_then_init_run_once_when_the_policy_loads() -> None:
    policy = policy_from_source(
        "local ran = {}\n"
        "kumo.on('init', function(...) ran[#ran + 1] = 'init:' .. select('#', ...) end)\n"
        "kumo.on('pre_init', function() ran[#ran + 1] = 'pre_init 1' end)\n"
        "kumo.on('pre_init', function() ran[#ran + 1] = 'pre_init 2' end)\n"
        "kumo.on('smtp_server_message_received', function(msg)\n"
        "  msg:set_meta('ran', table.concat(ran, ','))\n"
        "end)\n",
        "policy.lua",
    )
    for _ in range(2):
        assert meta_after(policy) == {"ran": "pre_init 1,pre_init 2,init:0"}


def test_init_can_have_only_one_handler() -> None:
    with pytest.raises(
        PolicyLoadError, match=r"init event already has a handler defined at policy\.lua:1"
    ):
        policy_from_source(
            "kumo.on('init', function() end)\nkumo.on('init', function() end)\n", "policy.lua"
        )


def test_an_error_in_init_is_a_load_error_at_its_line() -> None:
    with pytest.raises(PolicyLoadError) as caught:
        policy_from_source(
            "kumo.on('init', function()\n  local port = nil\n  return port + 1\nend)\n",
            "policy.lua",
        )
    assert str(caught.value).startswith(
        "policy.lua:3: attempt to perform arithmetic on a nil value"
    )


def test_an_endless_init_is_stopped_by_the_budget() -> None:
    limits = PolicyLimits(instruction_budget=200_000)
    with pytest.raises(PolicyLoadError, match=r"policy\.lua:1: instruction budget of 200000"):
        policy_from_source(
            "kumo.on('pre_init', function() while true do end end)\n", "policy.lua", limits
        )


def test_init_cannot_register_handlers() -> None:
    with pytest.raises(
        PolicyLoadError,
        match=r"policy\.lua:2: kumo\.on\('get_queue_config', \.\.\.\) called from within an event",
    ):
        policy_from_source(
            "kumo.on('init', function()\n  kumo.on('get_queue_config', function() end)\nend)\n",
            "policy.lua",
        )


def test_configuration_calls_with_no_meaning_here_log_once_what_relaystream_does_instead(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "relaystream.policy")
    calls = sorted(CONFIGURATION_ELSEWHERE)
    policy_from_source(
        "kumo.on('init', function()\n"
        + "".join(f"  kumo.{name} {{ name = 'x' }}\n" for name in calls)
        + "".join(f"  kumo.{name} {{ name = 'y' }}\n" for name in calls)
        + "end)\n",
        "policy.lua",
    )
    logged = [r for r in caplog.records if r.name == "relaystream.policy"]
    assert [r.levelno for r in logged] == [logging.INFO] * len(calls)
    assert [r.getMessage() for r in logged] == [
        f"policy.lua:{line}: kumo.{name}: accepted, no effect in relaystream: "
        f"{CONFIGURATION_ELSEWHERE[name]}"
        for line, name in enumerate(calls, start=2)
    ]


def test_a_kumo_function_that_does_not_exist_is_an_error_that_names_it() -> None:
    with pytest.raises(PolicyLoadError) as caught:
        policy_from_source(
            "kumo.on('init', function()\n  kumo.configure_something_new {}\nend)\n",
            "policy.lua",
        )
    assert str(caught.value) == (
        "policy.lua:2: attempt to call a nil value (field 'configure_something_new')"
    )
