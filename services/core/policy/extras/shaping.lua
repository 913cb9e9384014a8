-- policy-extras.shaping, relaystream's own implementation of KumoMTA's module, with its data
-- format (shaping.toml / shaping.json: `default`, per-domain entries that roll up by MX site,
-- `replace_base`, `sources`, `automation`) and its entry points:
--
--   local shaping = require 'policy-extras.shaping'
--   kumo.on('get_egress_path_config', shaping:setup { '/opt/kumomta/etc/shaping.toml' })
--
--   local shaper = shaping:setup_with_automation { extra_files = {...}, ... }
--   kumo.on('get_egress_path_config', shaper.get_egress_path_config)
--
-- relaystream's default file (extras/shaping.toml) comes first unless `no_default_files`.
-- The data is read and checked at setup: a missing file or a field that makes no egress path
-- is an error then. TSA (automation rules, publish, subscribe) does not run in relaystream:
-- it is accepted with a loud warning.
local kumo = require 'kumo'

local mod = {}

local DEFAULT_FILE = '/opt/kumomta/share/policy-extras/shaping.toml'

function mod:setup(extra_files)
  return self:setup_with_automation({
    extra_files = extra_files,
    publish = {},
    subscribe = {},
  }).get_egress_path_config
end

local function warn_tsa(options)
  local urls = {}
  for _, key in ipairs { 'publish', 'subscribe' } do
    for _, url in ipairs(options[key] or {}) do
      urls[#urls + 1] = key .. ' ' .. tostring(url)
    end
  end
  if #urls > 0 then
    kumo.shaping.relaystream_warn(
      'policy-extras.shaping: relaystream does not run TSA: no log records are published '
        .. 'and no suspensions are received (' .. table.concat(urls, ', ') .. ')'
    )
  end
end

function mod:setup_with_automation(options)
  if mod.CONFIGURED then
    error('shaping module has already been configured', 2)
  end
  options = options or {}
  warn_tsa(options)

  local file_names = {}
  if not options.no_default_files then
    table.insert(file_names, DEFAULT_FILE)
  end
  for _, file_name in ipairs(options.extra_files or {}) do
    table.insert(file_names, file_name)
  end

  local data = kumo.shaping.load(file_names, options.load_validation_options)
  local errors = data:get_errors()
  if #errors > 0 then
    error('policy-extras.shaping: ' .. table.concat(errors, '; '), 2)
  end
  for _, warning in ipairs(data:get_warnings()) do
    kumo.shaping.relaystream_warn('policy-extras.shaping: ' .. warning)
  end

  local function load_shaping_data()
    return data
  end

  local function get_egress_path_config(domain, egress_source, site_name, skip_make)
    local params = data:get_egress_path_config(domain, egress_source, site_name)
    if params.refresh_strategy == nil then
      params.refresh_strategy = 'Epoch'
    end
    if skip_make then
      -- KumoMTA's test hook: the fields, before kumo.make_egress_path checks them.
      return params
    end
    return kumo.make_egress_path(params)
  end

  mod.CONFIGURED = {
    _file_names = file_names,
    _options = options,
    load_shaping_data = load_shaping_data,
    get_egress_path_config = get_egress_path_config,
    -- Publishing to TSA has nothing to set up here (warned above).
    setup_publish = function() end,
  }
  return mod.CONFIGURED
end

return mod
