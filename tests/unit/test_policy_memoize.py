"""kumo.memoize: results cached by arguments for `ttl`, at most `capacity`, in caches shared
by name, with KumoMTA's required parameters."""

from __future__ import annotations

import pytest
from lua_policy_eval import error_of, meta_of


def test_a_result_is_cached_per_arguments_and_the_eldest_goes_at_capacity() -> None:
    meta = meta_of(
        "local calls = 0\n"
        "local f = kumo.memoize(function(a, b) calls = calls + 1; return { a, b } end,\n"
        "  { name = 'pairs', ttl = '5 minutes', capacity = 2 })\n"
        "f(1, 'x'); f(1, 'x'); f(2, 'x')\n"
        "msg:set_meta('after_hits', calls)\n"
        "f(3, 'x') -- evicts (1, 'x'), the eldest\n"
        "f(2, 'x')\n"
        "msg:set_meta('after_capacity', calls)\n"
        "f(1, 'x')\n"
        "msg:set_meta('evicted', calls)\n"
        "local copy = f(2, 'x'); copy[1] = 'changed'\n"
        "msg:set_meta('unchanged', f(2, 'x')[1])"
    )
    assert meta == {"after_hits": 2, "after_capacity": 3, "evicted": 4, "unchanged": 2}


def test_an_entry_expires_after_its_ttl() -> None:
    meta = meta_of(
        "local calls = 0\n"
        "local f = kumo.memoize(function() calls = calls + 1; return calls end,\n"
        "  { name = 'short', ttl = '20ms', capacity = 10 })\n"
        "f(); f(); kumo.time.sleep(0.05); f()\n"
        "msg:set_meta('calls', calls)"
    )
    assert meta == {"calls": 2}


def test_functions_with_one_name_share_one_cache_and_errors_are_not_cached() -> None:
    meta = meta_of(
        "local shared = { name = 'shared', ttl = 60, capacity = 5 }\n"
        "local a = kumo.memoize(function(x) return 'a' .. x end, shared)\n"
        "local b = kumo.memoize(function(x) return 'b' .. x end, shared)\n"
        "msg:set_meta('a', a(1)); msg:set_meta('b', b(1))\n"
        "local fails = true\n"
        "local c = kumo.memoize(function() if fails then error('down') end return 'up' end,\n"
        "  { name = 'flaky', ttl = 60, capacity = 5 })\n"
        "msg:set_meta('first', (pcall(c))); fails = false; msg:set_meta('second', c())"
    )
    assert meta == {"a": "a1", "b": "a1", "first": False, "second": "up"}


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ("{ ttl = 60, capacity = 1 }", "name is required"),
        ("{ name = 'n', capacity = 1 }", "ttl is required"),
        ("{ name = 'n', ttl = 60 }", "capacity is required"),
        ("{ name = 'n', ttl = 'soon', capacity = 1 }", "ttl: invalid duration 'soon'"),
        ("{ name = 'n', ttl = 60, capacity = 1, size = 3 }", "unknown parameter 'size'"),
    ],
)
def test_kumomtas_required_parameters_are_checked_at_the_line(params: str, error: str) -> None:
    assert error_of(f"kumo.memoize(print, {params})").startswith(
        f"policy.lua:3: kumo.memoize: {error}"
    )


def test_arguments_that_cannot_be_a_key_are_a_clear_error() -> None:
    message = error_of(
        "local f = kumo.memoize(function() end, { name = 'n', ttl = 60, capacity = 1 })\nf(print)"
    )
    assert message.startswith("policy.lua:4: kumo.memoize: the arguments cannot be a cache key")
