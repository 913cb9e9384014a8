-- kumo.uuid: new_v1, new_v4, new_v6, new_v7 and parse; a Uuid's fields are bytes,
-- hyphenated, simple, braced and urn, and tostring gives the hyphenated form (uuid.py).
local lib = ...
local kumo, host_function = lib.kumo, lib.host_function
local setmetatable, next = setmetatable, next

local UuidMeta = {
  __name = "Uuid",
  __metatable = "Uuid",
  __tostring = function(value) return value.hyphenated end,
  __eq = function(a, b) return a.bytes == b.bytes end,
}

local uuid = {}
for _, name in next, { "new_v1", "new_v4", "new_v6", "new_v7", "parse" } do
  local make = host_function("uuid_" .. name)
  uuid[name] = function(...) return setmetatable(make(...), UuidMeta) end
end

kumo.uuid = uuid
