-- The edges of the kumo namespace: what KumoMTA has and relaystream refuses (with why, from
-- kumo_surface.REFUSED) is an error when called that names it and the reason, at the
-- policy's line. A name that exists in neither is nil, as in KumoMTA, so that a policy can
-- test for a function (`if kumo.x then`); calling it is Lua's error, which names the field.
-- Loaded after every other namespace (namespaces/__init__.py), so anything they define is
-- found first.
local lib = ...
local kumo, policy_location, host_function = lib.kumo, lib.policy_location, lib.host_function
local error, type, tostring, next = error, type, tostring, next
local setmetatable, getmetatable, rawget = setmetatable, getmetatable, rawget

local refusals = host_function("surface_refusals")()
local refused_modules = host_function("surface_refused_modules")()

-- Why `require(name)` is refused (kumo_surface.REFUSED_MODULES), or nil.
function lib.refused_module_reason(name)
  return refused_modules[name]
end

local function refuse(name, reason)
  error(policy_location(3) .. name .. ": not available in relaystream: " .. reason, 0)
end

-- A stand-in for a name that is not there: calling it, or anything under it, raises `fail`.
local stand_in
local function stand_in_meta(name, fail, reason)
  return {
    __metatable = false,
    __name = name,
    __call = function() fail(name, reason) end,
    __index = function(_, key) return stand_in(name .. "." .. tostring(key), fail, reason) end,
    __newindex = function() fail(name, reason) end,
    __tostring = function() return name end,
  }
end
stand_in = function(name, fail, reason)
  return setmetatable({}, stand_in_meta(name, fail, reason))
end

-- Missing fields of a namespace table: refused (whole namespace, or one function) or nil.
local function guard(namespace_table, prefix, refused_reason)
  if getmetatable(namespace_table) ~= nil then
    return -- the namespace has its own metatable (an object, not a plain table)
  end
  setmetatable(namespace_table, {
    __index = function(_, key)
      local name = prefix .. tostring(key)
      if refused_reason ~= nil then
        return stand_in(name, refuse, refused_reason)
      end
      local reason = refusals[string.sub(name, 6)]
      if reason ~= nil then
        return stand_in(name, refuse, reason)
      end
      return nil
    end,
  })
end

for name, reason in next, refusals do
  local existing = rawget(kumo, name)
  if type(existing) == "table" then
    guard(existing, "kumo." .. name .. ".", reason) -- e.g. kumo.aaa.configure_acct_log is kept
  end
end
for name, value in next, kumo do
  if type(value) == "table" and refusals[name] == nil then
    guard(value, "kumo." .. name .. ".")
  end
end
guard(kumo, "kumo.")

-- `require 'kumo.string'` and the like: the namespace, as KumoMTA gives it.
function lib.require_kumo_module(short_name)
  local reason = refusals[short_name]
  if reason ~= nil then
    error(policy_location(3) .. "require 'kumo." .. short_name .. "': not available in "
      .. "relaystream: " .. reason, 0)
  end
  local module = rawget(kumo, short_name)
  if type(module) ~= "table" then
    error(policy_location(3) .. "require 'kumo." .. short_name .. "': no such module in "
      .. "relaystream", 0)
  end
  return module
end
