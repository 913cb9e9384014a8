-- kumo.time and kumo.sleep: Time (microseconds since the Unix epoch, UTC) and TimeDelta
-- (signed microseconds) values with KumoMTA's fields, metamethods and constructors; parsing
-- and formatting are Python's (time.py). kumo.time.sleep sleeps only within the running
-- call's deadline: a policy runs inside a message's processing.
local lib = ...
local kumo, host_function = lib.kumo, lib.host_function
local policy_location, remaining_seconds = lib.policy_location, lib.remaining_seconds
local error, type, tostring, setmetatable, getmetatable = error, type, tostring, setmetatable, getmetatable
local next, string_format = next, string.format

local now_micros = host_function("time_now")
local monotonic = host_function("time_monotonic")
local duration_micros = host_function("time_duration")
local human = host_function("time_human")
local time_field = host_function("time_field")
local time_format = host_function("time_format")
local host_sleep = host_function("time_sleep")
local timer_done = host_function("time_timer_done")

-- Values live in upvalue tables keyed by the object, so a policy cannot forge or alter them.
local micros_of = setmetatable({}, { __mode = "k" })
local TimeMeta, DeltaMeta = { __name = "Time", __metatable = "Time" }, { __name = "TimeDelta", __metatable = "TimeDelta" }

local function new_delta(micros)
  local delta = setmetatable({}, DeltaMeta)
  micros_of[delta] = micros
  return delta
end

local function new_time(micros)
  local t = setmetatable({}, TimeMeta)
  micros_of[t] = micros
  return t
end

local function is(value, meta)
  return type(value) == "table" and getmetatable(value) == meta.__metatable and micros_of[value] ~= nil
end

local function operand_error(op)
  error(policy_location(3) .. "kumo.time: cannot " .. op .. " these values", 0)
end

TimeMeta.__index = function(t, key)
  local micros = micros_of[t]
  if key == "unix_timestamp" then
    return micros // 1000000
  elseif key == "unix_timestamp_millis" then
    return micros // 1000
  elseif key == "elapsed" then
    return new_delta(now_micros() - micros)
  elseif key == "format" then
    return function(self, pattern)
      return time_format(micros_of[self], pattern)
    end
  end
  return time_field(micros, key)
end
TimeMeta.__tostring = function(t) return time_field(micros_of[t], "text") end
TimeMeta.__eq = function(a, b) return micros_of[a] == micros_of[b] end
TimeMeta.__lt = function(a, b) return micros_of[a] < micros_of[b] end
TimeMeta.__le = function(a, b) return micros_of[a] <= micros_of[b] end
TimeMeta.__add = function(a, b)
  if is(a, TimeMeta) and is(b, DeltaMeta) then
    return new_time(micros_of[a] + micros_of[b])
  elseif is(a, DeltaMeta) and is(b, TimeMeta) then
    return new_time(micros_of[a] + micros_of[b])
  end
  operand_error("add")
end
TimeMeta.__sub = function(a, b)
  if is(a, TimeMeta) and is(b, DeltaMeta) then
    return new_time(micros_of[a] - micros_of[b])
  elseif is(a, TimeMeta) and is(b, TimeMeta) then
    return new_delta(micros_of[a] - micros_of[b])
  end
  operand_error("subtract")
end

DeltaMeta.__index = function(d, key)
  local micros = micros_of[d]
  if key == "seconds" then
    return micros / 1000000
  elseif key == "milliseconds" then
    return micros // 1000
  elseif key == "microseconds" then
    return micros
  elseif key == "nanoseconds" then
    return micros * 1000
  elseif key == "human" then
    return human(micros)
  end
  return nil
end
DeltaMeta.__tostring = function(d) return human(micros_of[d]) end
DeltaMeta.__eq = function(a, b) return micros_of[a] == micros_of[b] end
DeltaMeta.__lt = function(a, b) return micros_of[a] < micros_of[b] end
DeltaMeta.__le = function(a, b) return micros_of[a] <= micros_of[b] end
DeltaMeta.__add = function(a, b)
  if is(a, DeltaMeta) and is(b, DeltaMeta) then
    return new_delta(micros_of[a] + micros_of[b])
  elseif is(a, DeltaMeta) and is(b, TimeMeta) then
    return new_time(micros_of[a] + micros_of[b])
  end
  operand_error("add")
end
DeltaMeta.__sub = function(a, b)
  if is(a, DeltaMeta) and is(b, DeltaMeta) then
    return new_delta(micros_of[a] - micros_of[b])
  end
  operand_error("subtract")
end
DeltaMeta.__unm = function(a) return new_delta(-micros_of[a]) end

local time = {}

function time.now()
  return new_time(now_micros())
end

for _, name in next, { "from_unix_timestamp", "parse_rfc3339", "parse_rfc2822", "with_ymd_hms" } do
  local convert = host_function("time_" .. name)
  time[name] = function(...) return new_time(convert(...)) end
end

function time.parse_duration(value)
  if is(value, DeltaMeta) then
    return value
  end
  return new_delta(duration_micros(value))
end

-- Seconds from a number or a duration string, for sleep and memoize.
function lib.seconds_of(value)
  return duration_micros(value) / 1000000
end

function time.sleep(seconds)
  if type(seconds) ~= "number" then
    error(policy_location(2) .. "kumo.time.sleep: expected a number of seconds, got a "
      .. type(seconds), 0)
  end
  local left = remaining_seconds()
  if seconds > left then
    error(policy_location(2) .. string_format("kumo.time.sleep(%g): longer than what is left "
      .. "of this policy call's deadline (%.3f s); relaystream runs a policy inside a "
      .. "message's processing, not as a background task", seconds, left), 0)
  end
  host_sleep(seconds)
end

local TimerMeta = { __name = "Timer", __metatable = "Timer" }
local started_at = setmetatable({}, { __mode = "k" })

local function finish(timer)
  local start = started_at[timer]
  if start == nil then
    return 0
  end
  started_at[timer] = nil
  local elapsed = monotonic() - start.at
  timer_done(start.label, elapsed)
  return elapsed
end
TimerMeta.__index = { done = finish }
TimerMeta.__close = finish

function time.start_timer(label)
  local timer = setmetatable({}, TimerMeta)
  started_at[timer] = { label = tostring(label), at = monotonic() }
  return timer
end

kumo.time = time
kumo.sleep = time.sleep -- KumoMTA's older name
