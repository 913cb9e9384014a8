-- policy-extras.queue: KumoMTA's queue helper, written for relaystream with the same data
-- format and API. A data file (TOML or JSON, or an inline table) says:
--
--   scheduling_header, tenant_header / remove_tenant_header, campaign_header /
--   remove_campaign_header, default_tenant      how `helper:apply(msg)` sets tenant/campaign
--   [tenant.NAME]                               a tenant's queue config fields, require_authz
--   [queue.default]                             fields for every queue
--   [queue.DOMAIN] / .TENANT / .TENANT.CAMPAIGN fields by destination domain (wildcards such
--                                               as '*.example.com' allowed), narrowed by tenant
--                                               and campaign; routing_domain too
--
-- A queue's config is the fields of default, domain, tenant, domain+tenant and
-- domain+tenant+campaign, later ones winning; `setup` registers the get_queue_config handler
-- that returns it. Data files are read once, when `setup` runs (when the policy loads), and
-- every key is checked then: relaystream reads its policy when a service starts, so a bad
-- file stops the start instead of the first message.
local kumo = require 'kumo'
local utils = require 'policy-extras.policy_utils'
local host = select(2, ...)

local mod = {}

-- The top-level settings and their Lua types.
local SETTINGS = {
  scheduling_header = 'string',
  tenant_header = 'string',
  remove_tenant_header = 'boolean',
  campaign_header = 'string',
  remove_campaign_header = 'boolean',
  default_tenant = 'string',
}

-- The helper's own fields in a [queue...] section (not queue config fields).
local QUEUE_SECTION_FIELDS = { routing_domain = 'string', overall_max_message_rate = 'string' }
-- The helper's own fields in a [tenant.NAME] section.
local TENANT_FIELDS = { require_authz = 'list', overall_max_message_rate = 'string' }

-- The name of where a key sits, for error messages: queue.'gmail.com'.mytenant
local function path(parent, key)
  if string.find(key, '^[%w_-]+$') then
    return parent .. '.' .. key
  end
  return parent .. ".'" .. key .. "'"
end

local function fail(where, text)
  error(where .. ': ' .. text, 0)
end

-- Whether `name = value` is a valid queue config field (KumoMTA's helper exports this; its
-- log_hooks module uses it). Returns true, or false and the reason when the value is bad.
function mod.is_queue_config_option(name, value)
  local ok, kind = pcall(host.queue_config_field, name, kumo.json_encode(value))
  if not ok then
    return false, kind
  end
  return kind == 'field'
end

local function check_type(where, value, expected)
  if expected == 'list' then
    if type(value) ~= 'table' then
      fail(where, 'expected a list of strings, got a ' .. type(value))
    end
    for i, item in ipairs(value) do
      if type(item) ~= 'string' then
        fail(where .. '[' .. i .. ']', 'expected a string, got a ' .. type(item))
      end
    end
  elseif type(value) ~= expected then
    fail(where, 'expected a ' .. expected .. ', got a ' .. type(value))
  end
end

-- What one loading of the data files found that relaystream does not do: warned once.
local function new_notes()
  return { tuning = {}, rates = {}, campaign_fields = {} }
end

-- Sorts `key = value` of a section: a queue config field (kept in `layer.fields`), one of
-- the helper's own fields (`layer.own`), or neither. Returns false for neither.
local function read_field(layer, where, key, value, own_fields, notes)
  local own_type = own_fields[key]
  if own_type ~= nil then
    check_type(path(where, key), value, own_type)
    layer.own[key] = value
    if key == 'overall_max_message_rate' then
      notes.rates[#notes.rates + 1] = path(where, key) .. " = '" .. value .. "'"
    end
    return true
  end
  local ok, kind = pcall(host.queue_config_field, key, kumo.json_encode(value))
  if not ok then
    if host.is_fatal(kind) then
      error(kind, 0)
    end
    fail(path(where, key), host.error_text(kind))
  end
  if kind == 'field' then
    layer.fields[key] = value
    return true
  elseif kind == 'tuning' then
    notes.tuning[#notes.tuning + 1] = path(where, key)
    return true
  end
  return false
end

local function new_layer()
  return { fields = {}, own = {}, children = {} }
end

-- A [queue...] section. `depth` 1 is a domain (children: tenants), 2 a tenant within a
-- domain (children: campaigns), 3 a campaign. Keys that are no field and hold a table are
-- the next level down, as in KumoMTA ([queue.'gmail.com'.mytenant.welcome]); the explicit
-- `tenants` / `campaigns` tables of KumoMTA's typed form are read the same way.
local CHILD_KIND = { 'tenant', 'campaign' }
local CHILDREN_KEY = { 'tenants', 'campaigns' }

local function read_queue_section(where, section, depth, notes)
  if type(section) ~= 'table' then
    fail(where, 'expected a table, got a ' .. type(section))
  end
  local layer = new_layer()
  for key, value in pairs(section) do
    if type(key) ~= 'string' then
      fail(where, 'keys must be strings, got a ' .. type(key))
    end
    local child_kind = CHILD_KIND[depth]
    if child_kind and key == CHILDREN_KEY[depth] and type(value) == 'table' then
      for name, child in pairs(value) do
        layer.children[name] = read_queue_section(path(path(where, key), name), child, depth + 1, notes)
      end
    elseif not read_field(layer, where, key, value, QUEUE_SECTION_FIELDS, notes) then
      if child_kind == nil or type(value) ~= 'table' then
        fail(
          path(where, key),
          'not a queue config field'
            .. (child_kind and (' (nor a ' .. child_kind .. ' section, which is a table)') or '')
        )
      end
      layer.children[key] = read_queue_section(path(where, key), value, depth + 1, notes)
    end
  end
  return layer
end

-- A [tenant.NAME] section: queue config fields, require_authz, overall_max_message_rate and
-- `campaigns` (whose overall_max_message_rate KumoMTA reads; nothing else there applies).
local function read_tenant_section(where, section, notes)
  if type(section) ~= 'table' then
    fail(where, 'expected a table, got a ' .. type(section))
  end
  local layer = new_layer()
  for key, value in pairs(section) do
    if key == 'campaigns' then
      check_type(path(where, key), value, 'table')
      for name, campaign in pairs(value) do
        local campaign_where = path(path(where, key), name)
        local campaign_layer = read_queue_section(campaign_where, campaign, 3, notes)
        if next(campaign_layer.fields) ~= nil or campaign_layer.own.routing_domain then
          notes.campaign_fields[#notes.campaign_fields + 1] = campaign_where
        end
        layer.children[name] = campaign_layer
      end
    elseif not read_field(layer, where, key, value, TENANT_FIELDS, notes) then
      fail(path(where, key), 'not a queue config field, require_authz, overall_max_message_rate '
        .. 'or campaigns')
    end
  end
  return layer
end

local function merge_layer(into, layer)
  utils.merge_into(layer.fields, into.fields)
  utils.merge_into(layer.own, into.own)
  for name, child in pairs(layer.children) do
    local existing = into.children[name]
    if existing == nil then
      existing = new_layer()
      into.children[name] = existing
    end
    merge_layer(existing, child)
  end
end

local function read_sections(where, value, read)
  check_type(where, value, 'table')
  local sections = {}
  for name, section in pairs(value) do
    if type(name) ~= 'string' then
      fail(where, 'keys must be strings, got a ' .. type(name))
    end
    sections[name] = read(path(where, name), section)
  end
  return sections
end

-- One data file's (or inline table's) contents, read into `data`.
local function read_data(data, source, notes)
  if type(source) ~= 'table' then
    fail('queue data', 'expected a table, got a ' .. type(source))
  end
  for key, value in pairs(source) do
    if key == 'queue' or key == 'queues' then
      local sections = read_sections(key, value, function(where, section)
        return read_queue_section(where, section, 1, notes)
      end)
      for domain, layer in pairs(sections) do
        local name = host.ascii_domain(domain)
        data.queues[name] = data.queues[name] or new_layer()
        merge_layer(data.queues[name], layer)
      end
    elseif key == 'tenant' or key == 'tenants' then
      local sections = read_sections(key, value, function(where, section)
        return read_tenant_section(where, section, notes)
      end)
      for tenant, layer in pairs(sections) do
        data.tenants[tenant] = data.tenants[tenant] or new_layer()
        merge_layer(data.tenants[tenant], layer)
      end
    elseif SETTINGS[key] then
      check_type(key, value, SETTINGS[key])
      data.settings[key] = value
    else
      local known = utils.table_keys(SETTINGS)
      table.sort(known)
      fail(tostring(key), 'unknown key (known: queue, tenant, ' .. table.concat(known, ', ') .. ')')
    end
  end
end

local function describe_source(source, index)
  if type(source) == 'string' then
    return source
  end
  return 'inline table #' .. index
end

local function warn_notes(notes)
  table.sort(notes.tuning)
  for _, where in ipairs(notes.tuning) do
    host.warn('policy-extras.queue: ' .. where .. ' is a KumoMTA in-memory queue tuning '
      .. 'field, which means nothing in relaystream (Kafka holds the queues): ignored')
  end
  table.sort(notes.rates)
  for _, where in ipairs(notes.rates) do
    host.warn('policy-extras.queue: ' .. where .. ' is not enforced: relaystream has no '
      .. 'throttle_insert_ready_queue stage (use max_message_rate, a queue config field)')
  end
  table.sort(notes.campaign_fields)
  for _, where in ipairs(notes.campaign_fields) do
    host.warn('policy-extras.queue: the queue config fields of ' .. where .. ' do not apply, '
      .. "as in KumoMTA: set a campaign's fields in [queue.DOMAIN.TENANT.CAMPAIGN]")
  end
end

-- Reads every data file (names relative to the policy's folder) or inline table, in order,
-- later ones adding to and overriding earlier ones.
local function load_data(file_names)
  local data = { settings = {}, tenants = {}, queues = {} }
  local notes = new_notes()
  local function check(ok, err, prefix)
    if not ok then
      if host.is_fatal(err) then
        error(err, 0)
      end
      -- Host errors name the line in the module that read the file: the file is what matters.
      error('policy-extras.queue: ' .. prefix .. host.error_text(err), 0)
    end
  end
  for index, source in ipairs(file_names) do
    -- A read error names the file's full path already.
    local ok, loaded = pcall(utils.load_json_or_toml_file, source)
    check(ok, loaded, '')
    local read, err = pcall(read_data, data, loaded, notes)
    check(read, err, describe_source(source, index) .. ': ')
  end
  warn_notes(notes)
  return data
end

-- The layers that apply to a queue, least specific first.
local function layers_for(data, domain, tenant, campaign)
  local layers = {}
  local function add(layer)
    if layer ~= nil then
      layers[#layers + 1] = layer
    end
  end
  add(data.queues['default'])
  local domain_layer = domain and host.domain_entry(data.queues, domain)
  add(domain_layer)
  local tenant_layer = tenant and data.tenants[tenant]
  add(tenant_layer)
  local domain_tenant = domain_layer and tenant and domain_layer.children[tenant]
  add(domain_tenant)
  add(domain_tenant and campaign and domain_tenant.children[campaign])
  return layers
end

-- The queue config fields of a queue (nil when no section sets one), and the helper's own
-- fields (routing_domain) that the same sections set.
local function resolve(data, domain, tenant, campaign)
  local fields, own = {}, {}
  for _, layer in ipairs(layers_for(data, domain, tenant, campaign)) do
    utils.merge_into(layer.fields, fields)
    utils.merge_into(layer.own, own)
  end
  if next(fields) == nil then
    fields = nil
  end
  return fields, own
end

local function message_method(msg, name, setting)
  local method = msg[name]
  if method == nil then
    error('policy-extras.queue: ' .. setting .. ' needs msg:' .. name
      .. '(), which this relaystream does not provide', 0)
  end
  return method
end

local function apply(msg, data)
  local settings = data.settings
  if settings.scheduling_header then
    message_method(msg, 'import_scheduling_header', 'scheduling_header')(
      msg, settings.scheduling_header, true)
  end
  if settings.campaign_header then
    local campaign = msg:get_first_named_header_value(settings.campaign_header)
    if campaign then
      msg:set_meta('campaign', campaign)
      if settings.remove_campaign_header then
        message_method(msg, 'remove_all_named_headers', 'remove_campaign_header')(
          msg, settings.campaign_header)
      end
    end
  end
  local tenant, source = nil, nil
  if settings.tenant_header then
    tenant = msg:get_first_named_header_value(settings.tenant_header)
    if tenant then
      source = "'" .. settings.tenant_header .. "' header"
      if settings.remove_tenant_header then
        message_method(msg, 'remove_all_named_headers', 'remove_tenant_header')(
          msg, settings.tenant_header)
      end
    end
  end
  if not tenant and settings.default_tenant then
    tenant, source = settings.default_tenant, 'default_tenant option'
  end
  if tenant then
    local definition = data.tenants[tenant]
    if definition == nil then
      kumo.reject(500, string.format(
        "tenant '%s' specified by %s is not defined in your queue config", tenant, source))
    end
    local allowed = definition.own.require_authz
    if allowed then
      local identity = host.authorization_id(msg)
      if not identity then
        kumo.reject(500, string.format("tenant '%s' requires SMTP AUTH", tenant))
      end
      if not utils.table_contains(allowed, identity) then
        kumo.reject(500, string.format(
          "authz_id '%s' is not authorized to send as tenant '%s'", identity, tenant))
      end
    end
    msg:set_meta('tenant', tenant)
  end
  local _, own = resolve(data, msg:recipient().domain, msg:get_meta 'tenant',
    msg:get_meta 'campaign')
  if own.routing_domain then
    msg:set_meta('routing_domain', own.routing_domain)
  end
end

local SETUP_OPTIONS = {
  file_names = 'table',
  skip_queue_config_hook = 'boolean',
  -- KumoMTA's cache invalidation: the data here is read once, when the policy loads.
  invalidate_with_epoch = 'boolean',
}

-- `level`: the stack level of the policy's call, for errors.
local function configure(options, level)
  if type(options) ~= 'table' then
    error('policy-extras.queue: setup expects a list of data files or inline tables, got a '
      .. type(options), level)
  end
  for key, value in pairs(options) do
    local expected = SETUP_OPTIONS[key]
    if expected == nil then
      error("policy-extras.queue: setup_with_options: unknown option '" .. tostring(key)
        .. "' (known: file_names, skip_queue_config_hook, invalidate_with_epoch)", level)
    end
    if type(value) ~= expected then
      error('policy-extras.queue: setup_with_options: ' .. key .. ' must be a ' .. expected
        .. ', got a ' .. type(value), level)
    end
  end
  if options.file_names == nil then
    error('policy-extras.queue: setup_with_options: file_names is required', level)
  end
  if mod.CONFIGURED then
    error('queues module has already been configured', level)
  end
  local ok, data = pcall(load_data, options.file_names)
  if not ok then
    if host.is_fatal(data) then
      error(data, 0)
    end
    error(data, level)
  end

  local helper = { file_names = options.file_names }

  function helper:resolve_config(domain, tenant, campaign)
    return (resolve(data, domain, tenant, campaign))
  end

  function helper:apply(msg)
    apply(msg, data)
  end

  mod.CONFIGURED = {
    options = options,
    get_data = function()
      return data
    end,
    resolve_config = helper.resolve_config,
  }

  if not options.skip_queue_config_hook then
    kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
      local fields = resolve(data, domain, tenant, campaign)
      if fields then
        return kumo.make_queue_config(fields)
      end
    end)
  end
  return helper
end

-- Not tail calls: `configure` reports errors at the level of the policy's call.
function mod:setup(file_names)
  local helper = configure({ file_names = file_names }, 3)
  return helper
end

function mod:setup_with_options(options)
  local helper = configure(options, 3)
  return helper
end

-- KumoMTA guesses the provider_name of a domain by running get_egress_path_config on its
-- MX; relaystream's queue configs carry provider_name only when the data sets it.
function mod:resolve_provider(domain, routing_domain)
  host.warn('policy-extras.queue: resolve_provider is not available in relaystream '
    .. '(it returns nil): set provider_name in the queue data instead')
  return nil
end

return mod
