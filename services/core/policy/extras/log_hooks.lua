-- policy-extras.log_hooks: KumoMTA's log hook helper, written for relaystream with the same
-- API. `new`, `new_json` and `new_disposition_hook` declare a hook; each declaration is
-- checked here (unknown options, wrong types and bad queue config fields are errors) and
-- handed to relaystream (extras_host.declare_log_hook), which says what becomes of it.
--
-- KumoMTA runs a hook by queueing each log record as a message to `NAME.log_hook`, whose
-- queue config makes `make.NAME.log_hook` the delivery constructor. relaystream's log
-- records are on its log topic instead; the declaration is all it needs.
local kumo = require 'kumo'
local queue = require 'policy-extras.queue'
local host = select(2, ...)

local mod = { CONFIGURED = {} }

local function option_error(what, text)
  error('policy-extras.log_hooks: ' .. what .. ': ' .. text, 0)
end

-- Checks `options` against `spec` (option -> {type, required}); returns nothing.
local function check_options(what, options, spec)
  if type(options) ~= 'table' then
    option_error(what, 'expected a table of options, got a ' .. type(options))
  end
  for key, value in pairs(options) do
    local entry = spec[key]
    if entry == nil then
      local known = {}
      for name in pairs(spec) do
        known[#known + 1] = name
      end
      table.sort(known)
      option_error(what, "unknown option '" .. tostring(key) .. "' (known: "
        .. table.concat(known, ', ') .. ')')
    end
    if type(value) ~= entry[1] then
      option_error(what, key .. ' must be a ' .. entry[1] .. ', got a ' .. type(value))
    end
  end
  for key, entry in pairs(spec) do
    if entry[2] and options[key] == nil then
      option_error(what, key .. ' is required')
    end
  end
end

local function check_name(what, options)
  if options.name == '' or string.find(options.name, '[^%w_.-]') then
    option_error(what, "name '" .. options.name .. "' must be letters, digits, '_', '-' or '.'")
  end
  if mod.CONFIGURED[options.name] then
    error(string.format("log_hook with name '%s' has already been configured", options.name), 0)
  end
end

local function check_queue_config(what, fields)
  if fields == nil then
    return
  end
  for key, value in pairs(fields) do
    local ok, err = queue.is_queue_config_option(key, value)
    if not ok then
      option_error(what, 'queue_config.' .. tostring(key) .. ': '
        .. (err and host.error_text(err) or 'not a queue config field'))
    end
  end
end

local function check_positive_integer(what, options, key)
  local value = options[key]
  if value ~= nil and (math.type(value) ~= 'integer' or value < 1) then
    option_error(what, key .. ' must be a positive integer, got ' .. tostring(value))
  end
end

local HOOK_OPTIONS = {
  name = { 'string', true },
  log_parameters = { 'table' },
  queue_config = { 'table' },
  constructor = { 'function', true },
  batch_size = { 'number' },
  min_batch_size = { 'number' },
  max_batch_latency = { 'string' },
  filter = { 'function' },
}

local JSON_HOOK_OPTIONS = {
  name = { 'string', true },
  log_parameters = { 'table' },
  queue_config = { 'table' },
  url = { 'string', true },
}

local DISPOSITION_HOOK_OPTIONS = {
  name = { 'string', true },
  hook = { 'function', true },
}

-- What relaystream is told: the declaration without its Lua functions.
local function declare(kind, options, extra)
  local declaration = {
    kind = kind,
    name = options.name,
    log_parameters = options.log_parameters,
    queue_config = options.queue_config,
  }
  for key, value in pairs(extra or {}) do
    declaration[key] = value
  end
  mod.CONFIGURED[options.name] = options
  host.declare_log_hook(kumo.json_encode(declaration))
end

-- `declare_with(options)` as a method whose errors name the policy's line.
local function method(declare_with)
  return function(_, options)
    local ok, err = pcall(declare_with, options)
    if not ok then
      if host.is_fatal(err) then
        error(err, 0)
      end
      error(err, 2)
    end
  end
end

-- A hook whose records a Lua constructor delivers (KumoMTA's `make.NAME.log_hook`).
mod.new = method(function(options)
  local what = 'new'
  check_options(what, options, HOOK_OPTIONS)
  check_name(what, options)
  check_queue_config(what, options.queue_config)
  check_positive_integer(what, options, 'batch_size')
  check_positive_integer(what, options, 'min_batch_size')
  declare('lua', options, {
    batch_size = options.batch_size,
    min_batch_size = options.min_batch_size,
    max_batch_latency = options.max_batch_latency,
    filtered = options.filter ~= nil,
  })
end)

-- A hook that POSTs each log record as JSON to `url`.
mod.new_json = method(function(options)
  local what = 'new_json'
  check_options(what, options, JSON_HOOK_OPTIONS)
  check_name(what, options)
  check_queue_config(what, options.queue_config)
  if not string.find(options.url, '^https?://[^/]') then
    option_error(what, "url '" .. options.url .. "' must be an http:// or https:// URL")
  end
  declare('json', options, { url = options.url })
end)

-- A hook called with each message's final disposition (KumoMTA's log_disposition_NAME).
mod.new_disposition_hook = method(function(options)
  local what = 'new_disposition_hook'
  check_options(what, options, DISPOSITION_HOOK_OPTIONS)
  check_name(what, options)
  declare('disposition', options)
end)

return mod
