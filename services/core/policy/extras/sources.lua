-- policy-extras.sources, relaystream's own implementation of KumoMTA's module, with its data
-- format (sources.toml / sources.json):
--
--   [source."ip-1"]
--   source_address = "10.0.0.1"
--   [pool."BestReputation"."ip-1"]      # weight defaults to 1
--   [pool."MediumReputation"."ip-2"]
--   weight = 2
--
--   local sources = require 'policy-extras.sources'
--   sources:setup { '/opt/kumomta/etc/sources.toml' }
--
-- setup registers the get_egress_source and get_egress_pool handlers. Its files (names, or
-- tables already parsed) are read and checked at setup: every source through
-- kumo.make_egress_source, every pool entry against the sources, so a mistake is an error
-- then rather than when mail first uses it.
local kumo = require 'kumo'

local mod = {}

local function fail(text)
  error('policy-extras.sources: ' .. text, 0)
end

local function sorted_keys(t)
  local keys = {}
  for key in pairs(t) do
    if type(key) ~= 'string' then
      fail('expected names as keys, got ' .. tostring(key))
    end
    keys[#keys + 1] = key
  end
  table.sort(keys)
  return keys
end

local function read(file_name)
  if type(file_name) == 'table' then
    return file_name
  end
  if type(file_name) ~= 'string' then
    fail('expected file names or tables, got a ' .. type(file_name))
  end
  if file_name:match '%.toml$' then
    return kumo.serde.toml_load(file_name)
  end
  return kumo.serde.json_load(file_name)
end

local function load_file(file_name, target)
  local data = read(file_name)
  local where = type(file_name) == 'string' and file_name or '(inline table)'
  for _, key in ipairs(sorted_keys(data)) do
    if key ~= 'source' and key ~= 'pool' then
      fail(where .. ": unknown key '" .. key .. "' (expected source and pool tables)")
    end
  end
  for _, name in ipairs(sorted_keys(data.source or {})) do
    local params = data.source[name]
    if type(params) ~= 'table' then
      fail(where .. ": source '" .. name .. "' must be a table")
    end
    local merged = target.sources[name] or { name = name }
    for key, value in pairs(params) do
      merged[key] = value
    end
    target.sources[name] = merged
  end
  for _, pool_name in ipairs(sorted_keys(data.pool or {})) do
    local pool = target.pools[pool_name] or { name = pool_name, entries = {} }
    local pool_def = data.pool[pool_name]
    if type(pool_def) ~= 'table' then
      fail(where .. ": pool '" .. pool_name .. "' must be a table")
    end
    for _, source_name in ipairs(sorted_keys(pool_def)) do
      local params = pool_def[source_name]
      if type(params) ~= 'table' then
        fail(where .. ": pool '" .. pool_name .. "' entry '" .. source_name .. "' must be a table")
      end
      for key in pairs(params) do
        if key ~= 'weight' then
          fail(where .. ": pool '" .. pool_name .. "' entry '" .. source_name
            .. "': unknown key '" .. tostring(key) .. "' (expected weight)")
        end
      end
      table.insert(pool.entries, { name = source_name, weight = params.weight })
    end
    target.pools[pool_name] = pool
  end
end

local function load_data(data_files)
  local target = { sources = {}, pools = {} }
  for _, file_name in ipairs(data_files) do
    load_file(file_name, target)
  end
  -- Check everything now; the objects are what the handlers return.
  local checked = { sources = {}, pools = {} }
  for name, params in pairs(target.sources) do
    checked.sources[name] = kumo.make_egress_source(params)
  end
  for name, params in pairs(target.pools) do
    for _, entry in ipairs(params.entries) do
      if target.sources[entry.name] == nil and entry.name ~= 'unspecified' then
        fail("pool '" .. name .. "' names the source '" .. entry.name
          .. "', which no sources file defines")
      end
    end
    checked.pools[name] = kumo.make_egress_pool(params)
  end
  return target, checked
end

function mod:setup(data_files)
  if mod.CONFIGURED then
    error('sources module has already been configured', 2)
  end
  if type(data_files) ~= 'table' then
    error('sources:setup: expected a list of file names', 2)
  end
  local data, checked = load_data(data_files)

  mod.CONFIGURED = {
    data_files = data_files,
    get_data = function()
      return data
    end,
  }

  kumo.on('get_egress_source', function(source_name)
    local source = checked.sources[source_name]
    if source == nil then
      fail("no source named '" .. tostring(source_name) .. "' in the sources files")
    end
    return source
  end)

  kumo.on('get_egress_pool', function(pool_name)
    local pool = checked.pools[pool_name]
    if pool == nil then
      fail("no pool named '" .. tostring(pool_name) .. "' in the sources files")
    end
    return pool
  end)
end

return mod
