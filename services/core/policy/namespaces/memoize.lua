-- kumo.memoize: a function that caches what another returns, by its arguments, for `ttl`,
-- at most `capacity` results (the eldest goes first), in caches shared by `name`. The cache
-- is this policy's Lua state's, so one per service process, as KumoMTA's is one per kumod.
-- Population runs under the calling event's deadline, which is what bounds it here
-- (`populate_timeout` and its companions are accepted for that reason). A plain table result
-- is copied in and out, so that a caller changing it does not change the cache.
local lib = ...
local kumo, policy_location, encode_value = lib.kumo, lib.policy_location, lib.encode_value
local deep_copy, is_fatal, host_function = lib.deep_copy, lib.is_fatal, lib.host_function
local error, type, tostring, pcall, select = error, type, tostring, pcall, select
local getmetatable, math_type, table_pack = getmetatable, math.type, table.pack
local string_gsub = string.gsub

local monotonic = host_function("time_monotonic")
local caches = {} -- name -> { entries = key -> {value, expires}, order = {keys}, head, capacity }
local OPTIONAL = { invalidate_with_epoch = "boolean", populate_timeout = "string",
  retry_on_populate_timeout = "boolean", allow_stale_reads = "boolean" }

local function fail(text)
  error(policy_location(3) .. "kumo.memoize: " .. text, 0)
end

local function copied(value)
  if type(value) == "table" and getmetatable(value) == nil then
    return deep_copy(value, 0)
  end
  return value
end

local function cache_key(...)
  local args = table_pack(...)
  args.n = nil
  local ok, key = pcall(encode_value, { select("#", ...), args }, 0)
  if not ok then
    if is_fatal(key) then
      error(key, 0)
    end
    error(policy_location(3) .. "kumo.memoize: the arguments cannot be a cache key: "
      .. tostring(key), 0)
  end
  return key
end

function kumo.memoize(populate, params)
  if type(populate) ~= "function" then
    fail("expected a function to memoize, got a " .. type(populate))
  end
  if type(params) ~= "table" then
    fail("expected a table { name = ..., ttl = ..., capacity = ... }")
  end
  for key, value in next, params do
    local wanted = OPTIONAL[key]
    if key ~= "name" and key ~= "ttl" and key ~= "capacity" then
      if wanted == nil then
        fail("unknown parameter '" .. tostring(key) .. "'")
      elseif type(value) ~= wanted then
        fail(key .. " must be a " .. wanted)
      end
    end
  end
  local name, capacity = params.name, params.capacity
  if type(name) ~= "string" or name == "" then
    fail("name is required: a string naming the cache")
  end
  if math_type(capacity) ~= "integer" or capacity < 1 then
    fail("capacity is required: a whole number of entries, 1 or more")
  end
  if params.ttl == nil then
    fail("ttl is required: a duration such as '5 minutes'")
  end
  local ok, ttl = pcall(lib.seconds_of, params.ttl)
  if not ok then
    if is_fatal(ttl) then
      error(ttl, 0)
    end
    -- The host error already names the policy line: keep only its text.
    fail("ttl: " .. string_gsub(tostring(ttl), "^.-:%d+: ", "", 1))
  end
  local cache = caches[name]
  if cache == nil then
    cache = { entries = {}, order = {}, head = 1, size = 0 }
    caches[name] = cache
  end
  cache.capacity = capacity

  return function(...)
    local key = cache_key(...)
    local now = monotonic()
    local entry = cache.entries[key]
    if entry ~= nil and entry.expires > now then
      return copied(entry.value)
    end
    local value = populate(...)
    if entry == nil then
      -- Evict the eldest entries: `order` holds each live key once, eldest at `head`.
      while cache.size >= cache.capacity do
        local eldest = cache.order[cache.head]
        cache.order[cache.head] = nil
        cache.head = cache.head + 1
        cache.entries[eldest] = nil
        cache.size = cache.size - 1
      end
      cache.order[cache.head + cache.size] = key
      cache.size = cache.size + 1
    end
    cache.entries[key] = { value = copied(value), expires = monotonic() + ttl }
    return value
  end
end
