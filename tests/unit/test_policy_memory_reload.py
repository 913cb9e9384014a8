"""A Lua state that its policy filled up to the memory limit (kumo.memoize caches) is replaced
by a new load of the policy, so the calls after a memory failure work again; a call that only
needed too much for itself leaves the state, and its caches, as they were."""

from __future__ import annotations

import logging

import pytest

from relaystream.core.policy import PolicyAccepted, PolicyFailed, PolicyMessage, policy_from_source
from relaystream.core.policy.types import PolicyLimits

# Each new key adds a cached megabyte; 'huge' needs 20 MB for itself, cached or not.
POLICY = """\
local kumo = require 'kumo'
local populated = 0
local megabyte = kumo.memoize(function(key)
  populated = populated + 1
  if key == 'huge' then
    return #string.rep('x', 20 * 1024 * 1024)
  end
  return string.rep('x', 1024 * 1024) .. key
end, { name = 'megabytes', ttl = '1 hour', capacity = 1000 })
kumo.on('smtp_server_message_received', function(msg)
  megabyte(msg:get_meta('key'))
  msg:set_meta('populated', populated)
end)
"""
LIMITS = PolicyLimits(memory_bytes=16 * 1024 * 1024)


def message(key: str) -> PolicyMessage:
    return PolicyMessage("m", "a@example.org", "b@example.com", {"key": key})


def test_a_state_full_of_cached_values_is_reloaded_after_its_memory_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    policy = policy_from_source(POLICY, "policy.lua", LIMITS)
    results = [policy.on_message_received("ESMTP", message(f"k{index}")) for index in range(30)]
    failures = [index for index, result in enumerate(results) if isinstance(result, PolicyFailed)]
    assert failures, "the cache never filled the state"
    first = failures[0]
    failed = results[first]
    assert isinstance(failed, PolicyFailed) and failed.reason == "memory"
    # The next call runs in a new state: its cache is empty, the policy's counter starts again.
    after = results[first + 1]
    assert isinstance(after, PolicyAccepted)
    assert after.meta["populated"] == 1
    reloads = [record for record in caplog.records if "reloading the policy" in record.message]
    assert reloads and reloads[0].levelno == logging.ERROR


def test_a_call_that_needed_too_much_for_itself_keeps_the_state(
    caplog: pytest.LogCaptureFixture,
) -> None:
    policy = policy_from_source(POLICY, "policy.lua", LIMITS)
    assert isinstance(policy.on_message_received("ESMTP", message("k1")), PolicyAccepted)
    huge = policy.on_message_received("ESMTP", message("huge"))
    assert isinstance(huge, PolicyFailed) and huge.reason == "memory"
    kept = policy.on_message_received("ESMTP", message("k1"))
    assert isinstance(kept, PolicyAccepted)
    assert kept.meta["populated"] == 2  # k1 still cached: k1 and huge were populated
    assert not [record for record in caplog.records if "reloading" in record.message]
