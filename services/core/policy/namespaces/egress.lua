-- kumo.make_egress_path, kumo.make_egress_source, kumo.make_egress_pool: KumoMTA's egress
-- constructors. Each checks its table at the call (Python, egress.py, with the domain model's
-- rules: unknown keys and bad values are errors at the policy's line) and returns a read-only
-- object holding the checked fields with their defaults, as KumoMTA's userdata does. The
-- engine (sandbox.lua, run_egress_event) accepts from each egress event only an object of
-- that event's constructor, through `lib.egress_result_json`.
local lib = ...
local kumo, host_function = lib.kumo, lib.host_function
local encode_value, is_fatal, policy_location = lib.encode_value, lib.is_fatal, lib.policy_location
local setmetatable, pcall, error, type, tostring, next = setmetatable, pcall, error, type, tostring, next

local KINDS = {
  path = { constructor = "make_egress_path", type_name = "EgressPathConfig",
    event = "get_egress_path_config", check = host_function("egress_make_path") },
  source = { constructor = "make_egress_source", type_name = "EgressSource",
    event = "get_egress_source", check = host_function("egress_make_source") },
  pool = { constructor = "make_egress_pool", type_name = "EgressPool",
    event = "get_egress_pool", check = host_function("egress_make_pool") },
}
local KIND_OF_EVENT = {}
for _, kind in next, KINDS do
  KIND_OF_EVENT[kind.event] = kind
end

-- object -> { kind = ..., json = checked fields as JSON text }; weak, so objects can go.
local objects = setmetatable({}, { __mode = "k" })

local function read_only(kind, fields)
  local meta = {
    __index = fields,
    __newindex = function(_, key)
      error(policy_location(2) .. kind.type_name .. " is read-only (setting '"
        .. tostring(key) .. "'): pass the fields to kumo." .. kind.constructor, 0)
    end,
    __pairs = function()
      return next, fields, nil
    end,
    __name = kind.type_name,
    __metatable = false,
    __tostring = function()
      return kind.type_name
    end,
  }
  return setmetatable({}, meta)
end

local function make(kind, params)
  local name = "kumo." .. kind.constructor
  local existing = objects[params]
  local text
  if existing ~= nil and existing.kind == kind then
    text = existing.json
  else
    if type(params) ~= "table" then
      error(policy_location(3) .. name .. ": expected a table, got a " .. type(params), 0)
    end
    local ok
    ok, text = pcall(encode_value, params, 0)
    if not ok then
      if is_fatal(text) then
        error(text, 0)
      end
      error(policy_location(3) .. name .. ": " .. tostring(text), 0)
    end
  end
  local checked = kind.check(text)
  local object = read_only(kind, checked.value)
  objects[object] = { kind = kind, json = checked.json }
  return object
end

function kumo.make_egress_path(params)
  return make(KINDS.path, params)
end

function kumo.make_egress_source(params)
  return make(KINDS.source, params)
end

function kumo.make_egress_pool(params)
  return make(KINDS.pool, params)
end

-- What an egress event's handler returned, as the JSON text of its checked fields; or nil
-- and why not.
function lib.egress_result_json(event, value)
  local kind = KIND_OF_EVENT[event]
  local object = objects[value]
  if object ~= nil and object.kind == kind then
    return object.json
  end
  local got = value == nil and "nothing (nil)" or ("a " .. type(value))
  if object ~= nil then
    got = "a " .. object.kind.type_name
  end
  return nil, event .. " returned " .. got .. "; expected kumo." .. kind.constructor .. "{...}"
end
