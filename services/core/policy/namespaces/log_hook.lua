-- kumo.configure_log_hook: KumoMTA's log hook registration (policy-extras.log_hooks builds on
-- it there). KumoMTA turns each log record into a message for the hook's queue, delivered by
-- the policy's `make.NAME` constructor. relaystream's log records are its log topic; the hook
-- is declared like policy-extras.log_hooks' `new` (extras_host.declare_log_hook), with the
-- one warning saying what becomes of it. Parameters are checked as KumoMTA does
-- (deny_unknown_fields).
local lib = ...
local kumo, policy_location = lib.kumo, lib.policy_location
local declare_log_hook = lib.extras_host.declare_log_hook
local error, type, next, tostring, pcall = error, type, next, tostring, pcall
local math_type, table_sort, table_concat = math.type, table.sort, table.concat

-- parameter -> check(value): an error text, or nil when the value is good.
local function string_list(value)
  if type(value) ~= "table" then
    return "expected a list of strings, got a " .. type(value)
  end
  for _, item in next, value do
    if type(item) ~= "string" then
      return "expected a list of strings, found a " .. type(item)
    end
  end
  return nil
end

local PARAMETERS = {
  name = function(value)
    if type(value) ~= "string" or value == "" then
      return "expected a non-empty string"
    end
    return nil
  end,
  back_pressure = function(value)
    if math_type(value) ~= "integer" or value < 1 then
      return "expected a positive integer, got " .. tostring(value)
    end
    return nil
  end,
  meta = string_list,
  headers = string_list,
  per_record = function(value)
    if type(value) ~= "table" then
      return "expected a table, got a " .. type(value)
    end
    return nil
  end,
  deferred_spool = function(value)
    if type(value) ~= "boolean" then
      return "expected a boolean, got a " .. type(value)
    end
    return nil
  end,
}

local function fail(text)
  error(policy_location(3) .. "kumo.configure_log_hook: " .. text, 0)
end

function kumo.configure_log_hook(params)
  if type(params) ~= "table" then
    fail("expected a table of parameters, got a " .. type(params))
  end
  for key, value in next, params do
    local check = PARAMETERS[key]
    if check == nil then
      local known = {}
      for name in next, PARAMETERS do
        known[#known + 1] = name
      end
      table_sort(known)
      fail("unknown parameter '" .. tostring(key) .. "' (known: " .. table_concat(known, ", ")
        .. ")")
    end
    local problem = check(value)
    if problem ~= nil then
      fail(key .. ": " .. problem)
    end
  end
  if params.name == nil then
    fail("name is required")
  end
  local log_parameters = {}
  for key, value in next, params do
    if key ~= "name" then
      log_parameters[key] = value
    end
  end
  local ok, err = pcall(declare_log_hook, kumo.json_encode({
    kind = "lua",
    name = params.name,
    log_parameters = log_parameters,
    configured_by = "kumo.configure_log_hook",
  }))
  if not ok then
    if lib.is_fatal(err) then
      error(err, 0)
    end
    fail(tostring(err))
  end
end
