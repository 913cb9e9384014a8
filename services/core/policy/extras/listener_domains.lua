-- policy-extras.listener_domains: KumoMTA's listener-domain helper, written for relaystream
-- with the same data format and API. A data file (TOML or JSON, or an inline table) maps
-- domain names (wildcards such as '*.example.com' allowed, '*' for any domain) to the
-- fields of kumo.make_listener_domain (relay_to, relay_from, log_oob, log_arf), plus
-- relay_from_authz (SMTP AUTH identities that may relay from the domain); a `listener` table
-- holds the same per listener address ([listener.'127.0.0.1:25'.'example.com']).
--
--   kumo.on('get_listener_domain', listener_domains:setup { 'listener_domains.toml' })
--
-- A domain's entry is the one for the receiving listener, else the one for any listener,
-- else the '*' entry for any listener. The files are read and every entry checked when
-- `setup` runs (when the policy loads).
local kumo = require 'kumo'
local utils = require 'policy-extras.policy_utils'
local host = select(2, ...)

local mod = {}

local ANY = '*'

local function fail(where, text)
  error(where .. ': ' .. text, 0)
end

-- One entry, checked: its make_listener_domain fields and its relay_from_authz list.
local function read_entry(where, params)
  if type(params) ~= 'table' then
    fail(where, 'expected a table of listener domain fields, got a ' .. type(params))
  end
  local fields, authz = {}, nil
  for key, value in pairs(params) do
    if key == 'relay_from_authz' then
      if type(value) ~= 'table' then
        fail(where .. '.relay_from_authz', 'expected a list of strings, got a ' .. type(value))
      end
      for _, identity in ipairs(value) do
        if type(identity) ~= 'string' then
          fail(where .. '.relay_from_authz', 'expected a list of strings')
        end
      end
      authz = value
    else
      fields[key] = value
    end
  end
  local ok, err = pcall(kumo.make_listener_domain, fields)
  if not ok then
    if host.is_fatal(err) then
      error(err, 0)
    end
    fail(where, host.error_text(err))
  end
  return { fields = fields, relay_from_authz = authz }
end

-- `prefix`: where the entries sit, for error messages ("listener.'127.0.0.1:25'." or "").
local function add_entries(by_listener, listener, prefix, entries)
  if type(entries) ~= 'table' then
    fail(prefix, 'expected a table of domains, got a ' .. type(entries))
  end
  local target = by_listener[listener] or {}
  by_listener[listener] = target
  for domain, params in pairs(entries) do
    if type(domain) ~= 'string' then
      fail(prefix, 'domain names must be strings, got a ' .. type(domain))
    end
    local entry = read_entry(prefix .. "'" .. domain .. "'", params)
    local name = host.ascii_domain(domain)
    local existing = target[name]
    if existing == nil then
      target[name] = entry
    else
      -- A later file's fields add to and override an earlier file's.
      utils.merge_into(entry.fields, existing.fields)
      existing.relay_from_authz = entry.relay_from_authz or existing.relay_from_authz
    end
  end
end

local function read_data(by_listener, data)
  if type(data) ~= 'table' then
    fail('listener domain data', 'expected a table, got a ' .. type(data))
  end
  local per_domain = {}
  for key, value in pairs(data) do
    if key == 'listener' then
      if type(value) ~= 'table' then
        fail('listener', 'expected a table of listener addresses, got a ' .. type(value))
      end
      for listener, entries in pairs(value) do
        add_entries(by_listener, listener, "listener.'" .. tostring(listener) .. "'.", entries)
      end
    else
      per_domain[key] = value
    end
  end
  add_entries(by_listener, ANY, '', per_domain)
end

local function load_data(data_files)
  if type(data_files) ~= 'table' then
    error('expected a list of data files or inline tables, got a ' .. type(data_files), 0)
  end
  local by_listener = {}
  for index, source in ipairs(data_files) do
    local ok, data = pcall(utils.load_json_or_toml_file, source)
    if ok then
      ok, data = pcall(read_data, by_listener, data)
      if not ok and type(source) ~= 'string' then
        data = 'inline table #' .. index .. ': ' .. tostring(data)
      elseif not ok then
        data = source .. ': ' .. tostring(data)
      end
    end
    if not ok then
      if host.is_fatal(data) then
        error(data, 0)
      end
      error(host.error_text(data), 0)
    end
  end
  return by_listener
end

-- A domain's entry in one listener's table (exact name, else the nearest wildcard).
local function entry_for(entries, domain)
  return entries and host.domain_entry(entries, domain)
end

local function listener_domain(entry, conn_meta)
  local fields = {}
  utils.merge_into(entry.fields, fields)
  if entry.relay_from_authz then
    local identity = host.authorization_id(conn_meta)
    if utils.table_contains(entry.relay_from_authz, identity) then
      -- The authenticated client may relay from this domain: from its own address.
      local peer = utils.split_ip_port(conn_meta:get_meta 'received_from')
      fields.relay_from = { peer }
    end
  end
  return kumo.make_listener_domain(fields)
end

local function lookup(by_listener, domain, listener, conn_meta)
  local entry = entry_for(by_listener[listener], domain)
    or entry_for(by_listener[ANY], domain)
    or (by_listener[ANY] and by_listener[ANY][ANY])
  if entry == nil then
    return nil
  end
  return listener_domain(entry, conn_meta)
end

-- Reads and checks the data; returns the get_listener_domain handler.
function mod:setup(data_files)
  if mod.CONFIGURED then
    error('listener_domains module has already been configured', 2)
  end
  local ok, by_listener = pcall(load_data, data_files)
  if not ok then
    if host.is_fatal(by_listener) then
      error(by_listener, 0)
    end
    error('policy-extras.listener_domains: ' .. tostring(by_listener), 2)
  end
  mod.CONFIGURED = { data_files = data_files }
  return function(domain, listener, conn_meta)
    return lookup(by_listener, domain, listener, conn_meta)
  end
end

return mod
