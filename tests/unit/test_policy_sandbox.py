"""The Lua sandbox: escape attempts fail with clear errors; budgets stop runaway policies."""

from __future__ import annotations

import pytest

from relaystream.core.policy import (
    Policy,
    PolicyAccepted,
    PolicyFailed,
    PolicyLimits,
    PolicyLoadError,
    PolicyMessage,
    policy_from_source,
)
from relaystream.core.policy.lua_policy import new_sandbox_runtime

MESSAGE = PolicyMessage("msg-1", "alice@example.org", "bob@example.com", {"tenant": "acme"})
SMALL = PolicyLimits(instruction_budget=200_000, memory_bytes=16 * 1024 * 1024)


def on_smtp(body: str, limits: PolicyLimits = SMALL) -> Policy:
    source = f"kumo.on('smtp_server_message_received', function(msg)\n{body}\nend)\n"
    return policy_from_source(source, "policy.lua", limits)


def failure(body: str, limits: PolicyLimits = SMALL) -> PolicyFailed:
    result = on_smtp(body, limits).on_message_received("ESMTP", MESSAGE)
    assert isinstance(result, PolicyFailed), result
    return result


@pytest.mark.parametrize(
    ("attempt", "error"),
    [
        ("os.execute('id')", "attempt to call a nil value (field 'execute')"),
        ("os.remove('/tmp/x')", "attempt to call a nil value (field 'remove')"),
        ("os.rename('/tmp/x', '/tmp/y')", "attempt to call a nil value (field 'rename')"),
        ("os.exit(1)", "attempt to call a nil value (field 'exit')"),
        # os.tmpname gives a name no file can have (test_policy_kumo_corpus_gaps.py).
        ("os.setlocale('C')", "attempt to call a nil value (field 'setlocale')"),
        ("os.difftime(1, 0)", "attempt to call a nil value (field 'difftime')"),
        ("io.open('/etc/passwd')", "attempt to index a nil value (global 'io')"),
        ("require('os')", "module 'os' is not available in relaystream (allowed: kumo"),
        ("require('io')", "module 'io' is not available in relaystream (allowed: kumo"),
        ("require('debug')", "module 'debug' is not available in relaystream (allowed: kumo"),
        ("require('python')", "module 'python' is not available in relaystream"),
        ("require('/etc/passwd')", "module '/etc/passwd' is not available in relaystream"),
        (
            "require('policy-extras.nonexistent')",
            "module 'policy-extras.nonexistent' is not available",
        ),
        ("load('return 1')", "attempt to call a nil value (global 'load')"),
        ("loadstring('return 1')", "attempt to call a nil value (global 'loadstring')"),
        ("dofile('/etc/passwd')", "attempt to call a nil value (global 'dofile')"),
        ("loadfile('/etc/passwd')", "attempt to call a nil value (global 'loadfile')"),
        ("debug.getinfo(1)", "attempt to index a nil value (global 'debug')"),
        ("python.eval('1')", "attempt to index a nil value (global 'python')"),
        ("package.loadlib('x', 'y')", "attempt to call a nil value (field 'loadlib')"),
        ("package.searchers[2]('x')", "attempt to index a nil value (field 'searchers')"),
        ("package.cpath = '/tmp/?.so'", "package.cpath cannot be set: relaystream loads no"),
        ("package.preload.x = print", "attempt to index a nil value (field 'preload')"),
        ("string.dump(print)", "attempt to call a nil value (field 'dump')"),
        ("('').dump(print)", "attempt to call a nil value (field 'dump')"),
        ("getmetatable('').__index.dump(print)", "attempt to index a boolean value"),
        ("setmetatable('', {})", "bad argument #1 to 'setmetatable' (table expected"),
        ("getmetatable(msg).__index = nil", "attempt to index a boolean value"),
        ("collectgarbage('stop')", "only collectgarbage('count') is available"),
        ("setmetatable({}, {__gc = print})", "__gc metamethods are not available"),
        ("_G.os.execute('id')", "attempt to call a nil value (field 'execute')"),
    ],
)
def test_escape_attempts_fail_with_a_clear_error(attempt: str, error: str) -> None:
    result = failure(attempt)
    assert result.reason == "error"
    assert result.message.startswith("policy.lua:2: ")
    assert error in result.message


def test_the_policy_environment_holds_no_python_object() -> None:
    # Walk everything reachable from the globals (and the message object's methods): any
    # userdata would be a Python object that lupa exposes.
    walk = """
    local seen, found = {}, {}
    local function walk(value, path)
      if type(value) == 'userdata' then found[#found + 1] = path end
      if type(value) ~= 'table' or seen[value] then return end
      seen[value] = true
      for k, v in pairs(value) do walk(v, path .. '.' .. tostring(k)) end
    end
    walk(_G, '_G'); walk(msg, 'msg'); walk(msg:sender(), 'sender')
    msg:set_meta('x_found', table.concat(found, ','))
    """
    result = on_smtp(walk).on_message_received("ESMTP", MESSAGE)
    assert isinstance(result, PolicyAccepted)
    assert result.meta["x_found"] == ""


def test_the_kumo_namespaces_hand_out_no_python_object() -> None:
    # What the namespaces return (objects with metatables included) and the errors their
    # Python callbacks raise: no userdata anywhere, and errors are plain strings.
    walk = """
    local seen, found = {}, {}
    local function walk(value, path)
      if type(value) == 'userdata' then found[#found + 1] = path end
      if type(value) ~= 'table' or seen[value] then return end
      seen[value] = true
      for k, v in pairs(value) do walk(v, path .. '.' .. tostring(k)) end
      local mt = getmetatable(value)
      if type(mt) == 'table' then walk(mt, path .. '<mt>') end
    end
    local t = kumo.time.now()
    kumo.dns.configure_test_resolver { '$ORIGIN a.test.\\n@ 60 MX 1 mx.a.test.\\n' }
    local values = {
      time = t, delta = t.elapsed, fields = { t.rfc3339, t.year, t:format '%Y' },
      digest = kumo.digest.sha256('x'), uuid = kumo.uuid.new_v4(),
      regex = kumo.regex.compile('(?<n>x)'), captures = kumo.regex.compile('(?<n>x)'):captures 'x',
      mx = kumo.dns.lookup_mx 'a.test', split = kumo.string.split('a,b', ','),
      memo = kumo.memoize(function() return {1} end, { name = 'w', ttl = 1, capacity = 1 })(),
      timer = kumo.time.start_timer 'w', refused = kumo.http, unknown = kumo.nothing,
    }
    walk(values, 'values')
    for _, call in ipairs {
      function() return kumo.string.split({}, ',') end,
      function() return kumo.dns.lookup_mx 'b.test' end,
      function() return kumo.regex.compile '(' end,
      function() return kumo.encode.base64_decode '!' end,
      function() return kumo.http.build_client {} end,
      function() return kumo.time.parse_duration 'x' end,
    } do
      local ok, err = pcall(call)
      if ok or type(err) ~= 'string' then found[#found + 1] = 'error:' .. type(err) end
    end
    msg:set_meta('x_found', table.concat(found, ','))
    """
    result = on_smtp(walk).on_message_received("ESMTP", MESSAGE)
    assert isinstance(result, PolicyAccepted), result
    assert result.meta["x_found"] == ""


def test_the_runtime_denies_python_attribute_access() -> None:
    # Defence in depth behind "no Python object reachable": the runtime itself refuses
    # attribute access on any Python object that would be handed to Lua.
    runtime = new_sandbox_runtime(SMALL)
    peek = runtime.eval("function(obj) return obj.__class__ end")
    with pytest.raises(Exception, match="not accessible from a policy"):
        peek(MESSAGE)


def test_an_endless_loop_fails_within_its_budget_and_the_policy_stays_usable() -> None:
    policy = on_smtp(
        "if msg:get_meta('tenant') == 'loop' then while true do end end\nmsg:set_meta('x', 'done')"
    )
    looping = PolicyMessage("m", "a@b.c", "d@e.f", {"tenant": "loop"})
    result = policy.on_message_received("ESMTP", looping)
    assert isinstance(result, PolicyFailed)
    assert result.reason == "budget"
    assert result.message == "policy.lua:2: instruction budget of 200000 exceeded (endless loop?)"
    assert policy.on_message_received("ESMTP", MESSAGE) == PolicyAccepted(
        {"tenant": "acme", "x": "done"}
    )


@pytest.mark.parametrize(
    "loop",
    [
        "while true do pcall(function() while true do end end) end",
        "local spin = function() while true do end end\n"
        "while true do xpcall(spin, function() while true do end end) end",
        "coroutine.wrap(function() while true do end end)()",
        "local co = coroutine.create(function() while true do end end)\n"
        "while true do coroutine.resume(co) end",
        "local function f() return f() end\nf()",
    ],
)
def test_a_policy_cannot_catch_its_way_past_the_budget(loop: str) -> None:
    result = failure(loop)
    assert result.reason == "budget"


def test_an_endless_loop_in_get_queue_config_raises() -> None:
    policy = policy_from_source(
        "kumo.on('get_queue_config', function() while true do end end)", "policy.lua", SMALL
    )
    with pytest.raises(Exception, match="instruction budget") as caught:
        policy.get_queue_config("example.com", None, None, None)
    assert getattr(caught.value, "reason", None) == "budget"


def test_an_endless_loop_at_load_is_a_load_error() -> None:
    with pytest.raises(PolicyLoadError, match=r"policy.lua:1: instruction budget"):
        policy_from_source("while true do end", "policy.lua", SMALL)


@pytest.mark.parametrize(
    "bomb",
    [
        "local s = string.rep('x', 64 * 1024 * 1024)",
        "local t = {}\nfor i = 1, 1e8 do t[i] = i end",
        "local s = 'x'\nwhile true do s = s .. s end",
    ],
)
def test_a_memory_bomb_fails_and_the_policy_stays_usable(bomb: str) -> None:
    limits = PolicyLimits(instruction_budget=10**9, memory_bytes=16 * 1024 * 1024)
    policy = on_smtp(
        f"if msg:get_meta('tenant') == 'bomb' then\n{bomb}\nend\nmsg:set_meta('x', 1)", limits
    )
    bomb_message = PolicyMessage("m", "a@b.c", "d@e.f", {"tenant": "bomb"})
    result = policy.on_message_received("ESMTP", bomb_message)
    assert isinstance(result, PolicyFailed)
    assert result.reason == "memory"
    assert policy.on_message_received("ESMTP", MESSAGE) == PolicyAccepted(
        {"tenant": "acme", "x": 1}
    )


def test_a_policy_changing_its_string_library_does_not_change_the_engine() -> None:
    policy = on_smtp("string.format = nil\nstring.gsub = nil\nmsg:set_meta('x', {'a'})")
    for _ in range(2):
        result = policy.on_message_received("ESMTP", MESSAGE)
        assert isinstance(result, PolicyAccepted)
        assert result.meta["x"] == ["a"]


def test_a_to_be_closed_variable_cannot_outlive_the_budget() -> None:
    result = failure(
        "local guard <close> = setmetatable({}, {__close = function() while true do end end})\n"
        "while true do end"
    )
    assert result.reason == "budget"
