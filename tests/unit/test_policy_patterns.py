"""guards.lua's Lua pattern matcher gives exactly what Lua 5.4's C matcher gives.

The sandbox runs string.find/match/gmatch/gsub in the Lua implementation when a call's worst
case is too long for C (so the deadline can stop it): a policy must not see a difference. The
properties compare both implementations over generated patterns, subjects and arguments: the
same values, or both an error with the same message.
"""

from __future__ import annotations

from typing import Any

import lupa.lua54 as lua54
from hypothesis import given, settings
from hypothesis import strategies as st

from relaystream.core.policy.lua_policy import GUARDS_SOURCE

HARNESS = """
local guards_source = ...
local guards = assert(load(guards_source, '=relaystream-guards', 't'))(
  function() end, function() return false end)
local lua_impl = guards.lua

local function dump(packed)
  local parts = {}
  for i = 1, packed.n do
    local v = packed[i]
    local text = tostring(v)
    -- hex: results may be partial UTF-8 sequences
    parts[i] = type(v) .. ':' .. text:gsub('.', function(c) return ('%02x'):format(c:byte()) end)
  end
  return table.concat(parts, ',')
end

local function gmatch_all(gmatch, ...)
  local iterator = gmatch(...)
  local steps = {}
  for _ = 1, 60 do
    local values = table.pack(iterator())
    steps[#steps + 1] = dump(values)
    if values.n == 0 then break end
  end
  return table.concat(steps, ';')
end

local REPLACEMENTS = {
  table = setmetatable({ a = 'A', b = false, [1] = 'one', ['('] = true }, { __index = function(_, k)
    if k == ':' then return 7 end
  end }),
  ['function'] = function(...)
    local first = ...
    if first == 'a' then return nil end
    if first == 'b' then return {} end
    local parts = table.pack(...)
    for i = 1, parts.n do parts[i] = tostring(parts[i]) end
    return '<' .. table.concat(parts, '|', 1, parts.n) .. '>'
  end,
}

-- Runs `name` in both implementations; returns the two outcomes as text.
return function(name, subject, pattern, a3, a4)
  local function run(impl)
    if name == 'gmatch' then
      return table.pack(pcall(gmatch_all, impl.gmatch, subject, pattern, a3))
    end
    if name == 'gsub' then
      return table.pack(pcall(impl.gsub, subject, pattern, REPLACEMENTS[a3] or a3, a4))
    end
    return table.pack(pcall(impl[name], subject, pattern, a3, a4))
  end
  return dump(run(string)), dump(run(lua_impl))
end
"""

_runtime = lua54.LuaRuntime(register_eval=False, unpack_returned_tuples=True)
compare_implementations = _runtime.execute(HARNESS, GUARDS_SOURCE)

PATTERN_TOKENS = [
    "a", "b", ":", ";", " ", ".", "%a", "%d", "%s", "%w", "%x", "%p", "%c", "%g", "%l", "%u",
    "%A", "%D", "%S", "%W", "%%", "%.", "[ab]", "[^a]", "[a-c]", "[%d_]", "[]a]", "[^%s:]",
    "*", "+", "-", "?", "(", ")", "()", "%1", "%2", "%0", "%b()", "%bab", "%f[%w]",
    "%f[^a]", "^", "$", "%", "[", "\0", "%z",
]  # fmt: skip
SUBJECT_CHARS = "ab:; ()1_-^$%[]\0Zé"

patterns = st.lists(st.sampled_from(PATTERN_TOKENS), max_size=8).map("".join)
subjects = st.text(alphabet=SUBJECT_CHARS, max_size=14)
positions = st.none() | st.integers(min_value=-20, max_value=20)


def both(name: str, subject: str, pattern: str, a3: Any = None, a4: Any = None) -> None:
    c_result, lua_result = compare_implementations(name, subject, pattern, a3, a4)
    assert lua_result == c_result, (name, subject, pattern, a3, a4)


@settings(max_examples=1500, deadline=None)
@given(subjects, patterns, positions, st.none() | st.booleans())
def test_find_is_the_c_find(subject: str, pattern: str, init: int | None, plain: bool) -> None:
    both("find", subject, pattern, init, plain)


@settings(max_examples=1500, deadline=None)
@given(subjects, patterns, positions)
def test_match_is_the_c_match(subject: str, pattern: str, init: int | None) -> None:
    both("match", subject, pattern, init)


@settings(max_examples=1000, deadline=None)
@given(subjects, patterns, positions)
def test_gmatch_is_the_c_gmatch(subject: str, pattern: str, init: int | None) -> None:
    both("gmatch", subject, pattern, init)


replacements = (
    st.sampled_from(["table", "function"])
    | st.lists(st.sampled_from(["x", "%0", "%1", "%2", "%%", "%", "-", "%a"]), max_size=4).map(
        "".join
    )
    | st.integers(min_value=-5, max_value=5)
)


@settings(max_examples=1500, deadline=None)
@given(subjects, patterns, replacements, st.none() | st.integers(min_value=-1, max_value=4))
def test_gsub_is_the_c_gsub(
    subject: str, pattern: str, replacement: str | int, max_n: int | None
) -> None:
    both("gsub", subject, pattern, replacement, max_n)


def test_deep_patterns_are_too_complex_in_both() -> None:
    both("match", "a" * 300, "a?" * 250)
    both("find", "a" * 300, "(" * 40 + ")" * 40)
    both("gsub", "((a))" * 50, "%b()", "x")
