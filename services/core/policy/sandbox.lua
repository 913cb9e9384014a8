-- The sandbox every Lua policy runs in.
--
-- This chunk runs once per LuaRuntime, with the full standard library, before any policy
-- code. It keeps private references (upvalues) to everything it needs, removes what a
-- policy could use to escape or to tamper with the engine, builds the policy's global
-- environment, and returns the engine's entry points to Python. Policy code never sees a
-- Python object: the Python callbacks below are upvalues of Lua closures only.
local py_meta, py_print, py_monotonic, guards_source,
  budget_step, budget_ticks, deadline_seconds, py_event_registered, configuration_calls,
  py_configuration_call, py_getenv, py_warning, host, namespace_sources, extras_sources,
  py_conn_meta = ...

local SANDBOX_SOURCE = "=relaystream-sandbox"
-- Chunks named "=relaystream-..." are relaystream's own (the sandbox, guards.lua, the kumo
-- namespaces): errors are reported at the policy line that called into them.
local OWN_SOURCE_PREFIX = "=relaystream-"
local GUARDS_SOURCE = "=relaystream-guards" -- guards.lua: policy work, interruptible
local SMTP_EVENT = "smtp_server_message_received"
local INIT_EVENT, PRE_INIT_EVENT = "init", "pre_init"
local HTTP_EVENT = "http_message_generated"
local QUEUE_CONFIG_EVENT = "get_queue_config"
local LISTENER_DOMAIN_EVENT = "get_listener_domain"
local MEMORY_ERROR = "not enough memory"

local debug_sethook, debug_getinfo = debug.sethook, debug.getinfo
local debug_traceback, debug_getmetatable = debug.traceback, debug.getmetatable
local load, error, pcall, xpcall, type, tostring = load, error, pcall, xpcall, type, tostring
local next, select, setmetatable, rawget, rawlen = next, select, setmetatable, rawget, rawlen
local math_type, math_huge = math.type, math.huge
local string_format, string_gsub, string_match = string.format, string.gsub, string.match
local string_sub = string.sub
local table_concat, table_unpack, table_pack = table.concat, table.unpack, table.pack
local utf8_len = utf8.len
local os_time, os_date, os_clock = os.time, os.date, os.clock
local table_sort = table.sort
local coroutine_create, coroutine_resume = coroutine.create, coroutine.resume
local collectgarbage = collectgarbage

-- lupa's bridge table: policies get their own environment, but leave nothing behind.
python = nil
package.loaded.python = nil

-- Lua strings cross to Python as UTF-8: anything else would fail there, so make it text.
local function as_text(s)
  if utf8_len(s) == nil then
    return (string_gsub(s, "[\128-\255]", "?"))
  end
  return s
end

-- A copy of a standard library with the `guarded` versions of its functions (guards.lua),
-- so that a policy changing `string.format` changes only its own view.
local function copy_library(library, guarded)
  local copy = {}
  for k, v in next, library do
    copy[k] = guarded and guarded[k] or v
  end
  return copy
end


---------------------------------------------------------------------------------------------
-- Instruction budget and deadline. A count hook fires every `budget_step` VM instructions;
-- after `budget_ticks` firings, or once the monotonic clock passes the call's deadline, the
-- running policy code gets an error. From then on the hook fires on every instruction and
-- raises again, so a policy that catches the error with pcall cannot keep running: each
-- level of its own code fails in turn until control is back here. C functions do not fire
-- hooks: guards.lua keeps the long-running ones out of C, and `charge` looks at the clock
-- after every C_WORK_LIMIT of C work it let through, so that many short C calls between two
-- firings cannot add up either.
---------------------------------------------------------------------------------------------
local ticks = 0
local exhausted = false -- the budget or the deadline stopped the running call
local stop_reason, stop_message = nil, nil
local budget_instructions = budget_step * budget_ticks
local deadline = math_huge -- py_monotonic() value after which the running call stops
local c_work = 0 -- C work let through since the clock was last read
local c_work_limit = math_huge -- guards.C_WORK_LIMIT, once guards.lua is loaded
local matching = false -- guards.lua's Lua matcher is running: no budget, only the deadline
local stop_hook

-- The innermost policy frame at or above `level`, as "file:line: " (or "" if none).
local function policy_location(level)
  while true do
    local info = debug_getinfo(level, "Sl")
    if info == nil then
      return ""
    end
    if info.what ~= "C" and string_sub(info.source, 1, #OWN_SOURCE_PREFIX) ~= OWN_SOURCE_PREFIX
      and info.currentline > 0 then
      return as_text(info.short_src) .. ":" .. info.currentline .. ": "
    end
    level = level + 1
  end
end

local function stop(reason)
  if not exhausted then
    exhausted = true
    stop_reason = reason
    local location = policy_location(2)
    if reason == "timeout" then
      stop_message = string_format("%spolicy call exceeded its deadline of %s s", location,
        string_format("%g", deadline_seconds))
    else
      stop_message = string_format("%sinstruction budget of %d exceeded (endless loop?)",
        location, budget_instructions)
    end
    debug_sethook(stop_hook, "", 1)
  end
  error(stop_message, 0)
end

stop_hook = function()
  if not exhausted then
    if not matching then
      ticks = ticks + 1
    end
    if ticks <= budget_ticks and py_monotonic() <= deadline then
      return
    end
  end
  local info = debug_getinfo(2, "S")
  if info == nil or info.source == SANDBOX_SOURCE then
    return -- the engine's own code finishes its bookkeeping
  end
  stop(exhausted and stop_reason or (ticks > budget_ticks and "budget" or "timeout"))
end

local function charge(work)
  c_work = c_work + work
  if c_work >= c_work_limit then
    c_work = 0
    if py_monotonic() > deadline then
      stop("timeout")
    end
  end
end

-- The hook is on only while policy code runs: with any hook set, Lua 5.4 takes its slow
-- path on every instruction, and the engine's own bookkeeping needs no budget.
local function start_budget(deadline_at)
  ticks = 0
  c_work = 0
  matching = false
  exhausted = false
  stop_reason, stop_message = nil, nil
  deadline = deadline_at
  debug_sethook(stop_hook, "", budget_step)
end

local function stop_budget()
  debug_sethook()
  deadline = math_huge
end

local function set_matching(flag)
  local was = matching
  matching = flag
  return was
end

-- C work (in guards.lua's units, at most about a nanosecond each) the running call may still
-- do before its deadline: a guarded call whose worst case fits runs in C even when it is
-- worth more than C_WORK_LIMIT (the Lua matcher is about 30 times slower).
local function c_allowance()
  return (deadline - py_monotonic()) * 1e9
end

local guards = load(guards_source, GUARDS_SOURCE, "t")(charge, set_matching, c_allowance)
c_work_limit = guards.C_WORK_LIMIT
local policy_string = copy_library(string, guards.string)

-- Strings share one metatable whose __index is the string library: give it the guarded
-- functions, remove dump (it would hand out bytecode) and hide the metatable so a policy
-- cannot replace string methods.
string.dump = nil
policy_string.dump = nil
debug_getmetatable("").__index = copy_library(policy_string)
debug_getmetatable("").__metatable = false
---------------------------------------------------------------------------------------------
-- JSON: meta values and queue configs cross to Python as JSON text (tables) or as plain
-- scalars, so only JSON-compatible values leave the sandbox. A table whose keys are exactly
-- 1..n is an array; any other table (including the empty one, as mlua serializes it) is an
-- object whose keys must be strings or integers.
---------------------------------------------------------------------------------------------
local JSON_ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
for byte = 0, 31 do
  local char = string.char(byte)
  JSON_ESCAPES[char] = JSON_ESCAPES[char] or string_format("\\u%04x", byte)
end
JSON_ESCAPES["\127"] = "\\u007f"
local MAX_DEPTH = 32

local function encode_string(s)
  if utf8_len(s) == nil then
    error("string is not valid UTF-8", 0)
  end
  return '"' .. string_gsub(s, '[%c"\\]', JSON_ESCAPES) .. '"'
end

local function is_array(t)
  local count = 0
  for _ in next, t do
    count = count + 1
  end
  if count == 0 or rawlen(t) ~= count then
    return false
  end
  for i = 1, count do
    if rawget(t, i) == nil then
      return false
    end
  end
  return true
end

local encode_value

local function encode_table(t, depth)
  if depth > MAX_DEPTH then
    error("table nested more than " .. MAX_DEPTH .. " levels deep (a cycle?)", 0)
  end
  local parts = {}
  if is_array(t) then
    for i = 1, rawlen(t) do
      parts[i] = encode_value(rawget(t, i), depth + 1)
    end
    return "[" .. table_concat(parts, ",") .. "]"
  end
  -- Key order is Lua's table order: Python reads the text into a dict, order is irrelevant.
  local count = 0
  for k, item in next, t do
    local key = k
    if math_type(k) == "integer" then
      key = string_format("%d", k)
    elseif type(k) ~= "string" then
      error("table key of type " .. type(k) .. " cannot be a JSON object key", 0)
    end
    count = count + 1
    parts[count] = encode_string(key) .. ":" .. encode_value(item, depth + 1)
  end
  return "{" .. table_concat(parts, ",") .. "}"
end

encode_value = function(v, depth)
  local t = type(v)
  if t == "string" then
    return encode_string(v)
  elseif t == "boolean" then
    return v and "true" or "false"
  elseif t == "number" then
    if math_type(v) == "integer" then
      return string_format("%d", v)
    end
    if v ~= v or v == math_huge or v == -math_huge then
      error("number " .. tostring(v) .. " cannot be represented in JSON", 0)
    end
    local text = string_format("%.17g", v)
    if not string_match(text, "[%.eE]") then
      text = text .. ".0"
    end
    return text
  elseif t == "table" then
    return encode_table(v, depth)
  end
  error("a " .. t .. " cannot be represented in JSON", 0)
end

local function deep_copy(v, depth)
  if type(v) ~= "table" then
    return v
  end
  if depth > MAX_DEPTH then
    error("table nested more than " .. MAX_DEPTH .. " levels deep (a cycle?)", 0)
  end
  local copy = {}
  for k, item in next, v do
    copy[k] = deep_copy(item, depth + 1)
  end
  return copy
end

-- A copy of a value, checking on the way that encode_value will accept it: cheaper than
-- encoding while a policy runs (under the budget hook), and the error names the policy line.
local function json_copy(v, depth)
  local t = type(v)
  if t == "string" then
    if utf8_len(v) == nil then
      error("string is not valid UTF-8", 0)
    end
    return v
  elseif t == "boolean" then
    return v
  elseif t == "number" then
    if v ~= v or v == math_huge or v == -math_huge then
      error("number " .. tostring(v) .. " cannot be represented in JSON", 0)
    end
    return v
  elseif t ~= "table" then
    error("a " .. t .. " cannot be represented in JSON", 0)
  end
  if depth > MAX_DEPTH then
    error("table nested more than " .. MAX_DEPTH .. " levels deep (a cycle?)", 0)
  end
  local copy = {}
  for k, item in next, v do
    local kt = type(k)
    if kt ~= "string" and math_type(k) ~= "integer" then
      error("table key of type " .. kt .. " cannot be a JSON object key", 0)
    end
    copy[k] = json_copy(item, depth + 1)
  end
  return copy
end

---------------------------------------------------------------------------------------------
-- Errors. kumo.reject raises a Rejection object; any other error becomes a Failure carrying
-- the message (which names file and line) and a traceback.
---------------------------------------------------------------------------------------------
local Rejection = {
  __metatable = false,
  __tostring = function(r) return r.code .. " " .. r.text end,
}
local Failure = { __metatable = false, __tostring = function(f) return f.message end }

local function on_error(err)
  if exhausted or debug_getmetatable(err) == Rejection then
    return err
  end
  local message
  if type(err) == "string" then
    message = as_text(err)
  else
    local ok, text = pcall(tostring, err)
    message = policy_location(3) .. "error object is a " .. type(err)
      .. (ok and type(text) == "string" and (": " .. as_text(text)) or "")
  end
  return setmetatable({ message = message, traceback = as_text(debug_traceback(message, 2)) }, Failure)
end

-- What Python receives when a handler did not return normally.
local function outcome(err)
  if exhausted then
    return stop_reason, stop_message
  end
  local mt = debug_getmetatable(err)
  if mt == Rejection then
    return "reject", err.code, err.text
  elseif mt == Failure then
    if err.message == MEMORY_ERROR then
      return "memory", "memory limit exceeded"
    end
    return "error", err.message, err.traceback
  elseif err == MEMORY_ERROR then
    -- Lua does not call the message handler for allocation failures.
    return "memory", "memory limit exceeded"
  end
  return "error", as_text(tostring(err)), ""
end

---------------------------------------------------------------------------------------------
-- The message object handed to smtp_server_message_received / http_message_generated.
-- Its state lives in upvalues, not in the table, so rawset/rawget cannot reach it; it works
-- only while its handler runs. Here: the meta log; the other methods are namespaces/message.lua.
---------------------------------------------------------------------------------------------
local TAG_SCALAR, TAG_JSON, TAG_NULL = 1, 2, 3

local current = nil -- the message object of the running handler
local cur_id
local log, log_n = {}, 0 -- set_meta results: key, tag, value triples, one per key
local overrides = nil -- key -> position in log (created on the first set_meta of a call)
local table_values = nil -- key -> Lua copy of a table value, for get_meta

local Message = {}
local MessageMeta = { __index = Message, __metatable = false, __name = "Message" }
MessageMeta.__tostring = function() return "Message(" .. tostring(cur_id) .. ")" end

local function active(self, method)
  if type(self) ~= "table" then
    error("call it as msg:" .. method .. "(...), with a colon", 3)
  end
  if self ~= current then
    error("msg:" .. method .. "() called outside the handler that received this message", 3)
  end
end

function Message:set_meta(key, value)
  active(self, "set_meta")
  if type(key) ~= "string" or utf8_len(key) == nil then
    error("msg:set_meta: the key must be a UTF-8 string, got a " .. type(key), 2)
  end
  local t = type(value)
  local tag = TAG_SCALAR
  if t == "string" then
    if utf8_len(value) == nil then
      error("msg:set_meta('" .. key .. "'): value is not valid UTF-8", 2)
    end
  elseif t == "number" then
    if value ~= value or value == math_huge or value == -math_huge then
      error("msg:set_meta('" .. key .. "'): " .. tostring(value) .. " is not a JSON number", 2)
    end
  elseif value == nil then
    tag = TAG_NULL
  elseif t ~= "boolean" then
    local ok, copy = pcall(json_copy, value, 0)
    if not ok then
      if exhausted or copy == MEMORY_ERROR then
        error(copy, 0)
      end
      error("msg:set_meta('" .. key .. "'): " .. tostring(copy), 2)
    end
    if table_values == nil then
      table_values = {}
    end
    -- Encoded to JSON after the handler returns; get_meta hands out copies of this one.
    table_values[key] = copy
    tag, value = TAG_JSON, nil
  end
  if overrides == nil then
    overrides = {}
  end
  local position = overrides[key]
  if position == nil then
    position = log_n + 1
    log_n = log_n + 3
    overrides[key] = position
    log[position] = key
  end
  log[position + 1] = tag
  log[position + 2] = value
  if tag ~= TAG_JSON and table_values ~= nil then
    table_values[key] = nil
  end
end

function Message:get_meta(key)
  active(self, "get_meta")
  local position = overrides and overrides[key]
  if position == nil then
    return py_meta(key)
  end
  local tag = log[position + 1]
  if tag == TAG_SCALAR then
    return log[position + 2]
  elseif tag == TAG_JSON then
    return deep_copy(table_values[key], 0)
  end
  return nil
end

-- The connection metadata (KumoMTA's ConnectionMetaData) passed to the SMTP-time events. It
-- reads the session's metadata (py_conn_meta: ingest's per-session values); set_meta records
-- the change here and Python applies it to the session after the call (take_conn_changes),
-- so later events of the session see it. Replaying a recorded message (routing, audit) has
-- no session: it then reads the message's original meta, which holds the session's values.
local conn_active = false -- an event handler is running with a connection
local conn_sets = nil -- key -> value set by this call (NULL_VALUE for nil)
local conn_order, conn_n = {}, 0
local NULL_VALUE = {}
local ConnMeta = {}
local conn_meta = setmetatable({}, { __index = ConnMeta, __metatable = false, __name = "ConnectionMetaData" })
function ConnMeta:get_meta(key)
  if current == nil and not conn_active then
    error("conn_meta:get_meta() called outside an event handler", 2)
  end
  local value = conn_sets and conn_sets[key]
  if value ~= nil then
    if value == NULL_VALUE then
      return nil
    end
    return deep_copy(value, 0)
  end
  return py_conn_meta(key)
end
function ConnMeta:set_meta(key, value)
  if current == nil and not conn_active then
    error("conn_meta:set_meta() called outside an event handler", 2)
  end
  if type(key) ~= "string" or utf8_len(key) == nil then
    error("conn_meta:set_meta: the key must be a UTF-8 string, got a " .. type(key), 2)
  end
  local copy = NULL_VALUE
  if value ~= nil then
    local ok, checked = pcall(json_copy, value, 0)
    if not ok then
      if exhausted or checked == MEMORY_ERROR then
        error(checked, 0)
      end
      error("conn_meta:set_meta('" .. key .. "'): " .. tostring(checked), 2)
    end
    copy = checked
  end
  if conn_sets == nil then
    conn_sets = {}
  end
  if conn_sets[key] == nil then
    conn_n = conn_n + 1
    conn_order[conn_n] = key
  end
  conn_sets[key] = copy
end

---------------------------------------------------------------------------------------------
-- The `kumo` module.
---------------------------------------------------------------------------------------------
local single_handlers = {} -- event -> function, for the events KumoMTA allows once
local SINGLE_EVENTS = { [SMTP_EVENT] = true, [HTTP_EVENT] = true, [INIT_EVENT] = true }
local multi_handlers = {} -- event -> list of functions (get_queue_config, and events we never call)
local loading = false

local kumo = {}

function kumo.on(name, handler)
  if type(name) ~= "string" then
    error("kumo.on: the event name must be a string", 2)
  end
  if type(handler) ~= "function" then
    error("kumo.on('" .. name .. "', ...): the handler must be a function", 2)
  end
  if not loading then
    error("kumo.on('" .. name .. "', ...) called from within an event handler: "
      .. "register handlers when the policy is loaded", 2)
  end
  -- Python logs the warning for an event it does not run, and refuses a misspelt one.
  local refusal = py_event_registered(as_text(name), policy_location(2))
  if refusal ~= nil then
    error(refusal, 2)
  end
  if SINGLE_EVENTS[name] then
    local existing = single_handlers[name]
    if existing ~= nil then
      local info = debug_getinfo(existing, "S")
      error(string_format("%s event already has a handler defined at %s:%d",
        name, as_text(info.short_src), info.linedefined), 2)
    end
    single_handlers[name] = handler
    return
  end
  local list = multi_handlers[name]
  if list == nil then
    list = {}
    multi_handlers[name] = list
  end
  list[#list + 1] = handler
end

function kumo.reject(code, text)
  if math_type(code) == "float" and code == code // 1 then
    code = code // 1
  end
  if math_type(code) ~= "integer" or code < 400 or code > 599 then
    error("kumo.reject: the code must be an SMTP error code from 400 to 599, got " .. tostring(code), 2)
  end
  if type(text) ~= "string" then
    error("kumo.reject: the message must be a string", 2)
  end
  error(setmetatable({ code = code, text = as_text(text) }, Rejection), 0)
end

-- Returns a copy of the table; it is validated when get_queue_config returns it (Python
-- side), the table is checked here only for values JSON cannot carry.
function kumo.make_queue_config(params)
  if type(params) ~= "table" then
    error("kumo.make_queue_config: expected a table, got a " .. type(params), 2)
  end
  local ok, copy = pcall(json_copy, params, 0)
  if not ok then
    if exhausted or copy == MEMORY_ERROR then
      error(copy, 0)
    end
    error("kumo.make_queue_config: " .. tostring(copy), 2)
  end
  return copy
end

function kumo.json_encode(value)
  if value == nil then
    return "null" -- as KumoMTA (and kumo.serde.json_encode)
  end
  local ok, text = pcall(encode_value, value, 0)
  if not ok then
    if exhausted or text == MEMORY_ERROR then
      error(text, 0)
    end
    error("kumo.json_encode: " .. tostring(text), 2)
  end
  return text
end


-- KumoMTA configuration calls that mean nothing here (kumo_surface.CONFIGURATION_ELSEWHERE):
-- accepted, and Python logs what relaystream does instead.
-- A dotted name ("dns.set_mx_timeout") lives in that kumo sub-table.
for i = 1, #configuration_calls do
  local name = configuration_calls[i]
  local owner, field = kumo, name
  local space, rest = string_match(name, "^([^.]+)%.([^.]+)$")
  if space ~= nil then
    kumo[space] = kumo[space] or {}
    owner, field = kumo[space], rest
  end
  owner[field] = function()
    py_configuration_call(name, policy_location(2))
  end
end

---------------------------------------------------------------------------------------------
-- The kumo namespaces (namespaces/*.lua, one per KumoMTA namespace, like KumoMTA's mod-*
-- crates). Each chunk runs once, here, with `lib`: what it may use of the engine. Its
-- functions run as policy work (under the budget) and report errors at the policy's line.
---------------------------------------------------------------------------------------------
local function is_fatal(err)
  return exhausted or err == MEMORY_ERROR
end

-- A Python host callback as a Lua function. Python answers {true, value} or {false, text}
-- (host.py), so no Python exception or object ever reaches the policy.
local function host_function(name)
  local callback = host[name]
  if callback == nil then
    error("no host callback named " .. name, 2)
  end
  return function(...)
    -- Lua strings cross to Python as UTF-8 text: anything else is the policy's error here
    -- (binary data goes as hex: namespaces/encode.lua), never a Python exception.
    for i = 1, select("#", ...) do
      local arg = select(i, ...)
      if type(arg) == "string" and utf8_len(arg) == nil then
        error(policy_location(2) .. "argument " .. i .. " is not UTF-8 text", 0)
      end
    end
    local answer = callback(...)
    if answer[1] then
      return answer[2]
    end
    error(policy_location(2) .. answer[2], 0)
  end
end

-- Seconds left before the running call's deadline (math.huge outside a call).
local function remaining_seconds()
  return deadline - py_monotonic()
end

local lib = {
  kumo = kumo,
  remaining_seconds = remaining_seconds,
  Message = Message,
  active = active,
  as_text = as_text,
  policy_location = policy_location,
  json_copy = json_copy,
  encode_value = encode_value,
  deep_copy = deep_copy,
  is_fatal = is_fatal,
  host_function = host_function,
}
for i = 1, #namespace_sources do
  local entry = namespace_sources[i]
  assert(load(entry[2], OWN_SOURCE_PREFIX .. entry[1], "t"))(lib)
end

---------------------------------------------------------------------------------------------
-- `require`: only the modules listed here, and KumoMTA's `policy-extras.*` helpers that
-- relaystream ships (extras/*.lua, run in the policy's environment like the policy itself);
-- nothing is searched for or read from the policy's files.
---------------------------------------------------------------------------------------------
local env -- the policy's global environment, built below
local EXTRAS_PREFIX = "policy-extras."
local REQUIRABLE = { kumo = kumo }
local requirable_names = {}
for module_name in next, REQUIRABLE do
  requirable_names[#requirable_names + 1] = module_name
end
for extra_name in next, extras_sources do
  requirable_names[#requirable_names + 1] = EXTRAS_PREFIX .. extra_name
end
table_sort(requirable_names)
local requirable_text = table_concat(requirable_names, ", ")

local extras_loaded = {}
local LOADING = {}

local function require_extra(short_name)
  local module = extras_loaded[short_name]
  if module == LOADING then
    error("require '" .. EXTRAS_PREFIX .. short_name .. "': circular require", 3)
  elseif module ~= nil then
    return module
  end
  local chunk, err = load(extras_sources[short_name],
    "@policy-extras/" .. short_name .. ".lua", "t", env)
  if chunk == nil then
    error(err, 0)
  end
  extras_loaded[short_name] = LOADING
  local ok, result = pcall(chunk, EXTRAS_PREFIX .. short_name, lib.extras_host)
  if not ok then
    extras_loaded[short_name] = nil
    error(result, 0)
  end
  if result == nil then
    result = true
  end
  extras_loaded[short_name] = result
  return result
end

local function policy_require(name)
  if type(name) ~= "string" then
    error("bad argument #1 to 'require' (string expected, got " .. type(name) .. ")", 2)
  end
  local module = REQUIRABLE[name]
  if module ~= nil then
    return module
  end
  if lib.require_kumo_module ~= nil and string_sub(name, 1, 5) == "kumo." then
    return lib.require_kumo_module(string_sub(name, 6)) -- surface.lua: kumo.string, ...
  end
  if string_sub(name, 1, #EXTRAS_PREFIX) == EXTRAS_PREFIX then
    local short_name = string_sub(name, #EXTRAS_PREFIX + 1)
    if extras_sources[short_name] ~= nil then
      return require_extra(short_name)
    end
  end
  local reason = lib.refused_module_reason ~= nil and lib.refused_module_reason(name)
  if reason then
    error("require '" .. name .. "': not available in relaystream: " .. reason, 2)
  end
  error("module '" .. as_text(name) .. "' is not available in relaystream (allowed: "
    .. requirable_text .. ")", 2)
end

-- `package`: only `path`, which KumoMTA's policies extend to find their modules. Here it is
-- a plain string that nothing searches; setting it says so once, loudly.
local package_path = ""
local package_path_warned = false
local policy_package = setmetatable({}, {
  __metatable = false,
  __name = "package",
  __index = function(_, key)
    if key == "path" then
      return package_path
    end
    return nil
  end,
  __newindex = function(_, key, value)
    if key ~= "path" then
      error("package." .. as_text(tostring(key)) .. " cannot be set: relaystream loads no "
        .. "module from a file", 2)
    end
    if type(value) ~= "string" then
      error("package.path must be a string, got a " .. type(value), 2)
    end
    package_path = value
    if not package_path_warned then
      package_path_warned = true
      py_warning(policy_location(2), "package.path is not searched in relaystream: require "
        .. "gives only its allow-listed modules (" .. requirable_text .. ")")
    end
  end,
})

---------------------------------------------------------------------------------------------
-- The safe part of `os`: the clock, the calendar, and the environment without relaystream's
-- own settings (RELAYSTREAM_*: tokens, credentials), which py_getenv refuses with false.
---------------------------------------------------------------------------------------------
local policy_os = { time = os_time, date = os_date, clock = os_clock }

function policy_os.getenv(name)
  if type(name) ~= "string" then
    error("bad argument #1 to 'getenv' (string expected, got " .. type(name) .. ")", 2)
  end
  local value = py_getenv(as_text(name))
  if value == false then
    error("os.getenv('" .. as_text(name) .. "'): relaystream's own settings are not "
      .. "readable from a policy", 2)
  end
  return value
end

-- KumoMTA's policies pass os.tmpname() to configuration calls that want a scratch path
-- (configure_accounting_db_path, test spools), which relaystream accepts with a log line and
-- does not use. A policy writes no files here, so the name is one no file can ever have:
-- under /dev/null, which is not a directory. Unlike Lua's, it creates nothing.
local tmpname_count = 0
function policy_os.tmpname()
  tmpname_count = tmpname_count + 1
  return string_format("/dev/null/relaystream-tmpname-%d", tmpname_count)
end

---------------------------------------------------------------------------------------------
-- The policy's global environment: the safe part of the standard library.
---------------------------------------------------------------------------------------------
local policy_coroutine = copy_library(coroutine)
-- Hooks are per coroutine in Lua: give each new coroutine the budget hook.
function policy_coroutine.create(fn)
  local co = coroutine_create(fn)
  debug_sethook(co, stop_hook, "", budget_step)
  return co
end
function policy_coroutine.wrap(fn)
  local co = policy_coroutine.create(fn)
  return function(...)
    local results = table_pack(coroutine_resume(co, ...))
    if results[1] then
      return table_unpack(results, 2, results.n)
    end
    error(results[2], 0)
  end
end

local function policy_setmetatable(t, mt)
  if type(t) ~= "table" then
    error("bad argument #1 to 'setmetatable' (table expected, got " .. type(t) .. ")", 2)
  end
  -- A finalizer would run at an arbitrary later time, outside any handler and budget.
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    error("setmetatable: __gc metamethods are not available in the policy sandbox", 2)
  end
  return setmetatable(t, mt)
end

-- Lua runs a message handler with hooks disabled when the error came from a hook, which
-- is how the budget error is raised: a policy's own handler would then run unmetered. Once
-- the budget is exhausted, policy handlers are skipped and the error passes through.
local function policy_xpcall(fn, handler, ...)
  if type(handler) ~= "function" then
    error("bad argument #2 to 'xpcall' (function expected, got " .. type(handler) .. ")", 2)
  end
  return xpcall(fn, function(err)
    if exhausted then
      return err
    end
    return handler(err)
  end, ...)
end

local function policy_collectgarbage(option)
  if option == "count" then
    return collectgarbage("count")
  end
  error("collectgarbage: only collectgarbage('count') is available in the policy sandbox", 2)
end

local function policy_print(...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do
    parts[i] = as_text(tostring((select(i, ...))))
  end
  py_print(table_concat(parts, "\t"))
end

env = {
  _VERSION = _VERSION,
  assert = assert,
  error = error,
  getmetatable = getmetatable,
  ipairs = ipairs,
  next = next,
  pairs = pairs,
  pcall = pcall,
  print = policy_print,
  rawequal = rawequal,
  rawget = rawget,
  rawlen = rawlen,
  rawset = rawset,
  select = select,
  setmetatable = policy_setmetatable,
  tonumber = tonumber,
  tostring = tostring,
  type = type,
  xpcall = policy_xpcall,
  collectgarbage = policy_collectgarbage,
  coroutine = policy_coroutine,
  math = copy_library(math),
  string = copy_library(policy_string),
  table = copy_library(table, guards.table),
  utf8 = copy_library(utf8),
  os = policy_os,
  require = policy_require,
  package = policy_package,
  kumo = kumo,
}
env._G = env

---------------------------------------------------------------------------------------------
-- Entry points for Python.
---------------------------------------------------------------------------------------------
local engine = {}

-- Compiles and runs the policy's top level. Returns "ok", or a status and message.
function engine.load_policy(deadline_at, source, chunkname)
  local chunk, err = load(source, "@" .. chunkname, "t", env)
  if chunk == nil then
    return "syntax", as_text(err)
  end
  loading = true
  start_budget(deadline_at)
  local ok, result = xpcall(chunk, on_error)
  stop_budget()
  loading = false
  if not ok then
    return outcome(result)
  end
  -- KumoMTA runs pre_init, then init, once at start-up: here, once the policy is loaded.
  local init_handlers = multi_handlers[PRE_INIT_EVENT] or {}
  init_handlers = { table_unpack(init_handlers) }
  init_handlers[#init_handlers + 1] = single_handlers[INIT_EVENT]
  for i = 1, #init_handlers do
    start_budget(deadline_at)
    ok, result = xpcall(init_handlers[i], on_error)
    stop_budget()
    if not ok then
      return outcome(result)
    end
  end
  return "ok"
end

function engine.has_handler(event)
  return single_handlers[event] ~= nil or (multi_handlers[event] ~= nil and #multi_handlers[event] > 0)
end

-- Runs a message handler. Returns "none" (no handler), "ok" followed by the set_meta
-- key/tag/value triples, or the outcome of a failure.
-- The message's envelope and content are Python's (message_state.py), set around this call.
function engine.run_message(deadline_at, event, id)
  local handler = single_handlers[event]
  if handler == nil then
    return "none"
  end
  local msg = setmetatable({}, MessageMeta)
  current, cur_id = msg, id
  log_n, overrides, table_values = 0, nil, nil
  start_budget(deadline_at)
  local ok, err = xpcall(handler, on_error, msg, event == SMTP_EVENT and conn_meta or nil)
  stop_budget()
  current = nil
  if ok then
    if log_n == 0 then
      return "ok"
    end
    if table_values ~= nil then
      for key, value in next, table_values do
        log[overrides[key] + 2] = encode_value(value, 0)
      end
    end
    return "ok", table_unpack(log, 1, log_n)
  end
  return outcome(err)
end

-- A handler's result that must be a table (its event's kumo.make_* constructor's): "ok" and
-- the JSON text, or an error naming the handler's line.
local function table_result(handler, event, constructor, result)
  if type(result) ~= "table" then
    local info = debug_getinfo(handler, "S")
    return "error", string_format("%s:%d: %s returned a %s; expected kumo.%s{...}",
      as_text(info.short_src), info.linedefined, event, type(result), constructor), ""
  end
  local encoded, text = pcall(encode_value, result, 0)
  if not encoded then
    return "error", event .. " result: " .. tostring(text), ""
  end
  return "ok", text
end

-- Runs the get_queue_config handlers in registration order until one returns a config.
-- Returns "none" (no handler, or every handler returned nil), "ok" and the config as JSON
-- text, or the outcome of a failure.
function engine.run_queue_config(deadline_at, domain, tenant, campaign, routing_domain)
  local handlers = multi_handlers[QUEUE_CONFIG_EVENT]
  if handlers == nil then
    return "none"
  end
  for i = 1, #handlers do
    start_budget(deadline_at)
    local ok, result = xpcall(handlers[i], on_error, domain, tenant, campaign, routing_domain)
    stop_budget()
    if not ok then
      return outcome(result)
    end
    if result ~= nil then
      return table_result(handlers[i], QUEUE_CONFIG_EVENT, "make_queue_config", result)
    end
  end
  return "none"
end

-- The egress events, one handler each as in KumoMTA. Runs the handler; returns "none" (no
-- handler), "ok" and the result as JSON text (it must be an object of the event's kumo.make_*
-- constructor: namespaces/egress.lua), or the outcome of a failure.
local EGRESS_EVENTS = { "get_egress_path_config", "get_egress_source", "get_egress_pool" }
for i = 1, #EGRESS_EVENTS do
  SINGLE_EVENTS[EGRESS_EVENTS[i]] = true
end

function engine.run_egress_event(deadline_at, event, ...)
  local handler = single_handlers[event]
  if handler == nil then
    return "none"
  end
  start_budget(deadline_at)
  local ok, result = xpcall(handler, on_error, ...)
  stop_budget()
  local info = debug_getinfo(handler, "S")
  local where = string_format("%s:%d: ", as_text(info.short_src), info.linedefined)
  if not ok then
    local status, message, traceback = outcome(result)
    -- `return kumo.make_egress_path{...}` is a tail call: its error has no policy line left
    -- to name, so it names the handler.
    if status == "error" and not string_match(message, "^[^\n]-:%d+: ") then
      message = where .. "in the " .. event .. " handler: " .. message
    end
    return status, message, traceback
  end
  local text, why = lib.egress_result_json(event, result)
  if text == nil then
    return "error", where .. why, ""
  end
  return "ok", text
end

-- The connection metadata a get_listener_domain handler reads (conn_meta:get_meta), from the
-- `meta` table Python passes; read-only, and each get_meta hands out a copy.
local function listener_conn_meta(meta)
  local methods = {}
  function methods:get_meta(key)
    return deep_copy(meta[key], 0)
  end
  function methods:set_meta()
    error("conn_meta:set_meta: connection metadata is read-only in get_listener_domain", 2)
  end
  return setmetatable({}, { __index = methods, __metatable = false, __name = "ConnectionMetaData" })
end

-- get_listener_domain: one handler, as in KumoMTA. Returns "none" (no handler, or it returned
-- nil), "ok" and its kumo.make_listener_domain table as JSON text, or a failure's outcome.
SINGLE_EVENTS[LISTENER_DOMAIN_EVENT] = true

function engine.run_listener_domain(deadline_at, domain, listener, meta)
  local handler = single_handlers[LISTENER_DOMAIN_EVENT]
  if handler == nil then
    return "none"
  end
  start_budget(deadline_at)
  local ok, result = xpcall(handler, on_error, domain, listener, listener_conn_meta(meta))
  stop_budget()
  if not ok then
    return outcome(result)
  end
  if result == nil then
    return "none"
  end
  return table_result(handler, LISTENER_DOMAIN_EVENT, "make_listener_domain", result)
end

-- The SMTP-time events (smtp_server_connection_accepted, _ehlo, _mail_from, _rcpt_to,
-- _auth_plain): runs each handler of `event` in registration order with the arguments
-- KumoMTA passes (an EnvelopeAddress where KumoMTA passes one, then conn_meta, then any extra
-- argument). Returns "none" (no handler), "ok" and the JSON text of the last handler's
-- non-nil return value (or nothing), or the outcome of a failure (a kumo.reject included).
local ADDRESS_EVENTS = { smtp_server_mail_from = true, smtp_server_rcpt_to = true }
function engine.run_event(deadline_at, event, ...)
  local handlers = multi_handlers[event]
  if handlers == nil or #handlers == 0 then
    return "none"
  end
  local args = table_pack(...)
  if ADDRESS_EVENTS[event] then
    args[1] = lib.make_address(args[1])
  end
  -- conn_meta goes after the event's own arguments (KumoMTA's order), before any extra one.
  local own = (event == "smtp_server_connection_accepted") and 0
    or (event == "smtp_server_auth_plain") and 3 or 1
  local call_args = {}
  for i = 1, own do
    call_args[i] = args[i]
  end
  call_args[own + 1] = conn_meta
  for i = own + 1, args.n do
    call_args[i + 1] = args[i]
  end
  local n = args.n + 1
  local returned = nil
  conn_active = true
  for i = 1, #handlers do
    start_budget(deadline_at)
    local ok, result = xpcall(handlers[i], on_error, table_unpack(call_args, 1, n))
    stop_budget()
    if not ok then
      conn_active = false
      return outcome(result)
    end
    if result ~= nil then
      returned = result
    end
  end
  conn_active = false
  if returned == nil then
    return "ok"
  end
  local encoded, text = pcall(encode_value, returned, 0)
  if not encoded then
    return "error", event .. " returned a value JSON cannot carry: " .. tostring(text), ""
  end
  return "ok", text
end

-- What the last call's conn_meta:set_meta changed, as JSON text: [[key, value], ...] in the
-- order first set (value null: removed). Clears the record first, so that a record that
-- cannot be encoded (out of memory) is not left behind for every later call: then it
-- answers false and the reason.
function engine.take_conn_changes()
  if conn_n == 0 then
    return nil
  end
  local sets, order, n = conn_sets, conn_order, conn_n
  conn_sets, conn_order, conn_n = nil, {}, 0
  local ok, text = pcall(function()
    local parts = {}
    for i = 1, n do
      local key = order[i]
      local value = sets[key]
      parts[i] = "[" .. encode_value(key, 0) .. ","
        .. (value == NULL_VALUE and "null" or encode_value(value, 0)) .. "]"
    end
    return "[" .. table_concat(parts, ",") .. "]"
  end)
  if ok then
    return text
  end
  return false, as_text(tostring(text))
end

return engine
