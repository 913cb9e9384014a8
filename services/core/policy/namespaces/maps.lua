-- kumo.cidr.make_map, kumo.domain_map.new and kumo.regex_set_map.new: tables looked up by an
-- IP address (longest CIDR block holding it), by a domain (exact, else the nearest
-- `*.parent` wildcard) and by text (the first of a set of patterns that matches, patterns in
-- sorted order). CIDR and pattern matching are maps.py's.
local lib = ...
local kumo, host_function, encode_value = lib.kumo, lib.host_function, lib.encode_value
local policy_location = lib.policy_location
local setmetatable, next, type, error, tostring = setmetatable, next, type, error, tostring
local string_lower, string_find, string_sub = string.lower, string.find, string.sub
local table_sort = table.sort

local cidr_check = host_function("maps_cidr_check")
local cidr_match = host_function("maps_cidr_match")
local regex_set_check = host_function("maps_regex_set_check")
local regex_set_match = host_function("maps_regex_set_match")

local function sorted_keys(entries)
  local keys = {}
  for key in next, entries do
    keys[#keys + 1] = key
  end
  table_sort(keys)
  return keys
end

-- The entries live in upvalues: the map table itself stays empty, so every access goes
-- through the metamethods.
local function cidr_map(initial)
  local entries, keys_json = {}, nil
  local map = setmetatable({}, {
    __name = "CidrMap",
    __index = function(_, address)
      if keys_json == nil then
        keys_json = encode_value(sorted_keys(entries), 0)
      end
      local key = cidr_match(keys_json, address)
      return key ~= nil and entries[key] or nil
    end,
    __newindex = function(_, key, value)
      cidr_check(key)
      entries[key] = value
      keys_json = nil
    end,
    __pairs = function() return next, entries, nil end,
  })
  for key, value in next, initial or {} do
    map[key] = value
  end
  return map
end

local function domain_map(initial)
  local entries = {}
  local map = setmetatable({}, {
    __name = "DomainMap",
    __index = function(_, domain)
      if type(domain) ~= "string" then
        return nil
      end
      domain = string_lower(domain)
      local exact = entries[domain]
      if exact ~= nil then
        return exact
      end
      local dot = string_find(domain, ".", 1, true)
      while dot ~= nil do
        local wildcard = entries["*" .. string_sub(domain, dot)]
        if wildcard ~= nil then
          return wildcard
        end
        dot = string_find(domain, ".", dot + 1, true)
      end
      return nil
    end,
    __newindex = function(_, key, value)
      if type(key) ~= "string" then
        error(policy_location(2) .. "kumo.domain_map: a key must be a domain, got a "
          .. type(key), 0)
      end
      entries[string_lower(key)] = value
    end,
    __pairs = function() return next, entries, nil end,
  })
  for key, value in next, initial or {} do
    map[key] = value
  end
  return map
end

local function regex_set_map(initial)
  if type(initial) ~= "table" then
    error(policy_location(2) .. "kumo.regex_set_map.new: expected a table of pattern = value", 0)
  end
  for pattern in next, initial do
    if type(pattern) ~= "string" then
      error(policy_location(2) .. "kumo.regex_set_map.new: a pattern must be a string, got "
        .. tostring(pattern), 0)
    end
  end
  local patterns = sorted_keys(initial)
  local values = {}
  for i = 1, #patterns do
    values[i] = initial[patterns[i]]
  end
  local patterns_json = encode_value(patterns, 0)
  regex_set_check(patterns_json)
  return setmetatable({}, {
    __name = "RegexSetMap",
    __index = function(_, text)
      local index = regex_set_match(patterns_json, text)
      return index ~= nil and values[index] or nil
    end,
    __newindex = function()
      error(policy_location(2) .. "kumo.regex_set_map: the map cannot change once made", 0)
    end,
  })
end

kumo.cidr = { make_map = cidr_map }
kumo.domain_map = { new = domain_map }
kumo.regex_set_map = { new = regex_set_map }
