"""The policy deadline: no policy call runs much past it, whatever it calls (issue 16, 3).

The three policies are the fault run's: before the deadline existed they ran for seconds to
minutes inside Lua's C string functions, where the instruction budget never looked (the
header parse 8.3 s at 2,000 characters, the find past 60 s, the gsub loop 29.5 s). Timing
bounds here are deliberately loose: "stopped near the deadline, not after many seconds".
"""

from __future__ import annotations

import time

import pytest

from relaystream.core.policy import (
    Policy,
    PolicyAccepted,
    PolicyFailed,
    PolicyLimits,
    PolicyLoadError,
    PolicyMessage,
    PolicyRuntimeError,
    policy_from_source,
)

DEADLINE = 0.25
LIMITS = PolicyLimits(deadline_seconds=DEADLINE)
# Stopped "at about the deadline": well below the seconds-to-minutes these ran before.
STOPPED_WITHIN = 10 * DEADLINE

HEADER_PARSE = """\
kumo.on('smtp_server_message_received', function(msg)
  local v = msg:get_first_named_header_value('X-Tag') or ''
  local a, b, c = v:match('^(.-):(.-):(.-);$')
  msg:set_meta('tag', a or 'none')
end)
"""
FIND = """\
kumo.on('smtp_server_message_received', function(msg)
  local v = msg:get_first_named_header_value('X-Tag') or ''
  if string.find(v, '.-.-.-.-.-.-b') then
    msg:set_meta('tag', 'b')
  end
end)
"""
GSUB_LOOP = """\
kumo.on('smtp_server_message_received', function(msg)
  local v = msg:get_first_named_header_value('X-Tag') or ''
  for i = 1, 20000 do
    v = v:gsub('a', 'a')
  end
  msg:set_meta('tag', #v)
end)
"""


def message(tag: str, message_id: str = "msg-1") -> PolicyMessage:
    return PolicyMessage(
        message_id, "alice@example.org", "bob@example.com", {}, headers=f"X-Tag: {tag}\r\n"
    )


def timed(policy: Policy, tag: str) -> tuple[object, float]:
    start = time.monotonic()
    result = policy.on_message_received("ESMTP", message(tag))
    return result, time.monotonic() - start


@pytest.mark.parametrize(
    ("source", "tag", "line"),
    [
        (HEADER_PARSE, ":" * 2000, 3),
        (FIND, "a" * 30_000, 3),
        (GSUB_LOOP, "a" * 30_000, 4),
    ],
    ids=["header-match", "find", "gsub-loop"],
)
def test_the_fault_runs_policies_stop_at_the_deadline_with_a_timeout(
    source: str, tag: str, line: int
) -> None:
    policy = policy_from_source(source, "policy.lua", LIMITS)
    result, elapsed = timed(policy, tag)
    assert isinstance(result, PolicyFailed), result
    assert result.reason == "timeout"
    assert result.message == f"policy.lua:{line}: policy call exceeded its deadline of 0.25 s"
    assert DEADLINE <= elapsed < STOPPED_WITHIN


@pytest.mark.parametrize("source", [HEADER_PARSE, FIND, GSUB_LOOP])
def test_after_a_timeout_the_next_message_runs_normally(source: str) -> None:
    policy = policy_from_source(source, "policy.lua", LIMITS)
    stopped, _ = timed(policy, ":" * 2000 if source == HEADER_PARSE else "a" * 30_000)
    assert isinstance(stopped, PolicyFailed)
    fine, elapsed = timed(policy, "xb:y:z;")
    assert isinstance(fine, PolicyAccepted), fine
    assert elapsed < DEADLINE
    expected = {HEADER_PARSE: "xb", FIND: "b", GSUB_LOOP: 7}[source]
    assert fine.meta["tag"] == expected


def test_normal_header_parses_are_unchanged() -> None:
    policy = policy_from_source(HEADER_PARSE, "policy.lua", LIMITS)
    result = policy.on_message_received("ESMTP", message("one:two:three;"))
    assert result == PolicyAccepted({"tag": "one"})


@pytest.mark.parametrize(
    "body",
    [
        # pcall around the slow call, then around the rest: the deadline error still wins.
        "while true do pcall(string.find, string.rep('a', 30000), '.-.-.-.-.-.-b') end",
        "for i = 1, 10 do pcall(function() while true do end end) end",
    ],
)
def test_a_policy_cannot_catch_its_way_past_the_deadline(body: str) -> None:
    # A budget far beyond the deadline, so only the deadline can stop these.
    limits = PolicyLimits(instruction_budget=10**12, deadline_seconds=DEADLINE)
    source = f"kumo.on('smtp_server_message_received', function(msg)\n{body}\nend)\n"
    policy = policy_from_source(source, "policy.lua", limits)
    result, elapsed = timed(policy, "")
    assert isinstance(result, PolicyFailed), result
    assert result.reason == "timeout"
    assert result.message.startswith("policy.lua:2: ")
    assert elapsed < STOPPED_WITHIN


@pytest.mark.parametrize(
    "body",
    [
        "local s = string.rep('', 1 << 62)",
        "table.move({}, 1, 1 << 40, 1, {})",
        "local s = string.rep('x', 1 << 20) local t = {} for i = 1, 2000 do t[i] = s end "
        "table.sort(t)",
        "local s = string.rep('a', 1 << 20) local p = s:sub(2) .. 'b' "
        "while true do local _ = s:find(p, 1, true) end",
    ],
    ids=["rep-empty", "move-nils", "sort-long-strings", "plain-find"],
)
def test_other_long_running_c_functions_are_stopped_too(body: str) -> None:
    limits = PolicyLimits(instruction_budget=10**12, deadline_seconds=DEADLINE)
    source = f"kumo.on('smtp_server_message_received', function(msg)\n{body}\nend)\n"
    policy = policy_from_source(source, "policy.lua", limits)
    result, elapsed = timed(policy, "")
    assert elapsed < STOPPED_WITHIN
    if body.startswith("local s = string.rep('', "):
        assert isinstance(result, PolicyAccepted), result  # the empty result, at once
    else:
        assert isinstance(result, PolicyFailed), result
        assert result.reason == "timeout", result


def test_the_deadline_applies_to_get_queue_config() -> None:
    source = (
        "kumo.on('get_queue_config', function(domain)\n"
        "  string.find(string.rep(domain, 3000), '.-.-.-.-.-.-b')\n"
        "end)\n"
    )
    policy = policy_from_source(source, "policy.lua", LIMITS)
    start = time.monotonic()
    with pytest.raises(PolicyRuntimeError) as raised:
        policy.get_queue_config("example.com", None, None, None)
    assert time.monotonic() - start < STOPPED_WITHIN
    assert raised.value.reason == "timeout"
    assert str(raised.value) == "policy.lua:2: policy call exceeded its deadline of 0.25 s"


def test_the_deadline_applies_at_load() -> None:
    source = "string.find(string.rep('a', 30000), '.-.-.-.-.-.-b')\n"
    with pytest.raises(PolicyLoadError, match=r"policy\.lua:1: policy call exceeded its deadline"):
        policy_from_source(source, "policy.lua", LIMITS)


def test_a_sort_error_names_the_policy_line() -> None:
    source = "kumo.on('smtp_server_message_received', function(msg)\n  table.sort({1, 'a'})\nend)\n"
    result = policy_from_source(source, "policy.lua", LIMITS).on_message_received(
        "ESMTP", message("")
    )
    assert isinstance(result, PolicyFailed)
    assert result.message.startswith("policy.lua:2: attempt to compare ")
