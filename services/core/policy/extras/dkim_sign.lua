-- policy-extras.dkim_sign: DKIM signing from a data file, with KumoMTA's format.
--
--   local dkim_sign = require 'policy-extras.dkim_sign'
--   local dkim_signer = dkim_sign:setup { 'dkim_data.toml' }
--   kumo.on('smtp_server_message_received', function(msg) dkim_signer(msg) end)
--
-- The files (TOML, or JSON when the name ends in .json; a table is taken as already read)
-- are merged in order: [base] defaults (selector, headers, expiration, canonicalizations,
-- over_sign, additional_signatures), [domain."NAME"] blocks chosen by the From header's
-- domain ("*.example.com" matches its subdomains), and [signature."NAME"] blocks added for
-- every message as base.additional_signatures lists them. A key file defaults to
-- /opt/kumomta/etc/dkim/DOMAIN/SELECTOR.key. The files are read and checked once, at
-- setup, so a mistake stops the policy from loading instead of failing mail later.
local kumo = require 'kumo'

local mod = {}

local DKIM_PATH = '/opt/kumomta/etc/dkim'

local BLOCK_KEYS = {
  selector = 'string',
  headers = 'list',
  policy = 'string',
  algo = 'string',
  expiration = 'number',
  filename = 'string',
  header_canonicalization = 'string',
  body_canonicalization = 'string',
  over_sign = 'boolean',
}
local BASE_KEYS = {
  additional_signatures = 'list',
  policy = 'string',
  selector = 'string',
  expiration = 'number',
  headers = 'list',
  header_canonicalization = 'string',
  body_canonicalization = 'string',
  over_sign = 'boolean',
}
local SIGNATURE_KEYS = { domain = 'string' }
for key, kind in pairs(BLOCK_KEYS) do
  SIGNATURE_KEYS[key] = kind
end
local DOMAIN_POLICIES = { Always = true }
local SIGNATURE_POLICIES = { Always = true, OnlyIfMissingDomainBlock = true }
local ALGORITHMS = { sha256 = 'rsa_sha256_signer', ed25519 = 'ed25519_signer' }
local VAULT_KEYS = { vault_mount = true, vault_path_prefix = true, vault_key = true }

local function fail(where, text)
  error('policy-extras.dkim_sign: ' .. where .. ': ' .. text, 0)
end

local function kind_of(value)
  if type(value) == 'table' then
    return 'list'
  end
  return type(value)
end

-- A copy of `block` with its keys checked against `allowed` (name -> kind).
local function checked_block(where, block, allowed)
  if type(block) ~= 'table' then
    fail(where, 'expected a table')
  end
  local copy = {}
  for key, value in pairs(block) do
    if VAULT_KEYS[key] then
      fail(where, key .. ': keys from HashiCorp Vault are not available in relaystream')
    end
    local kind = allowed[key]
    if kind == nil then
      fail(where, 'unknown key ' .. tostring(key))
    end
    if kind_of(value) ~= kind then
      fail(where, key .. ' must be a ' .. kind .. ', got a ' .. type(value))
    end
    copy[key] = value
  end
  return copy
end

local function merge_into(source, target)
  for key, value in pairs(source) do
    target[key] = value
  end
end

local function read_file(file)
  if type(file) == 'table' then
    return file, 'inline data'
  end
  if type(file) ~= 'string' then
    fail('setup', 'each data file must be a file name or a table, got a ' .. type(file))
  end
  if file:sub(-5) == '.json' then
    return kumo.json_load(file), file
  end
  return kumo.toml_load(file), file
end

local function load_data(files)
  local data = { base = {}, domain = {}, signature = {} }
  for _, file in ipairs(files) do
    local raw, name = read_file(file)
    for section in pairs(raw) do
      if section ~= 'base' and section ~= 'domain' and section ~= 'signature' then
        fail(name, 'unknown section ' .. tostring(section))
      end
    end
    if raw.base ~= nil then
      merge_into(checked_block(name .. ': [base]', raw.base, BASE_KEYS), data.base)
    end
    for section, allowed in pairs { domain = BLOCK_KEYS, signature = SIGNATURE_KEYS } do
      for block_name, block in pairs(raw[section] or {}) do
        local where = string.format('%s: [%s."%s"]', name, section, block_name)
        local target = data[section][block_name]
        if target == nil then
          target = {}
          data[section][block_name] = target
        end
        merge_into(checked_block(where, block, allowed), target)
      end
    end
  end

  for _, signame in ipairs(data.base.additional_signatures or {}) do
    if data.signature[signame] == nil then
      fail('[base]', "additional_signatures lists '" .. tostring(signame)
        .. "' but no [signature] block defines it")
    end
  end
  for domain_name, block in pairs(data.domain) do
    local where = string.format('[domain."%s"]', domain_name)
    if not (block.selector or data.base.selector) then
      fail(where, 'no selector, and no default selector in [base]')
    end
    local policy = block.policy or data.base.policy or 'Always'
    if not DOMAIN_POLICIES[policy] then
      fail(where, "policy must be 'Always', got '" .. policy .. "'")
    end
    if block.algo and not ALGORITHMS[block.algo] then
      fail(where, "algo must be 'sha256' or 'ed25519', got '" .. block.algo .. "'")
    end
  end
  for signame, block in pairs(data.signature) do
    local where = string.format('[signature."%s"]', signame)
    if block.domain == nil then
      fail(where, 'domain is required')
    end
    if not (block.selector or data.base.selector) then
      fail(where, 'no selector, and no default selector in [base]')
    end
    if block.policy and not SIGNATURE_POLICIES[block.policy] then
      fail(where, "policy must be 'Always' or 'OnlyIfMissingDomainBlock', got '"
        .. block.policy .. "'")
    end
    if block.algo and not ALGORITHMS[block.algo] then
      fail(where, "algo must be 'sha256' or 'ed25519', got '" .. block.algo .. "'")
    end
  end
  return data
end

-- The [domain] block for `domain`: its own, else the nearest "*.parent" wildcard.
local function domain_block(domains, domain)
  domain = domain:lower()
  local block = domains[domain]
  if block ~= nil then
    return block
  end
  local parent = domain:match '^[^.]*%.(.+)$'
  while parent do
    block = domains['*.' .. parent]
    if block ~= nil then
      return block
    end
    parent = parent:match '^[^.]*%.(.+)$'
  end
  return nil
end

local function make_signer(block, base, domain)
  local selector = block.selector or base.selector
  local params = {
    domain = domain,
    selector = selector,
    headers = block.headers or base.headers,
    expiration = block.expiration or base.expiration,
    header_canonicalization = block.header_canonicalization or base.header_canonicalization,
    body_canonicalization = block.body_canonicalization or base.body_canonicalization,
    over_sign = block.over_sign or base.over_sign,
    key = block.filename or string.format('%s/%s/%s.key', DKIM_PATH, domain, selector),
  }
  return kumo.dkim[ALGORITHMS[block.algo or 'sha256']](params)
end

local function sign(msg, data)
  local from_header = msg:from_header()
  if not from_header then
    kumo.reject(552, '5.6.0 DKIM signing requires a From header, but it is missing from this message')
  end
  local sender_domain = from_header.domain
  local base = data.base
  local signed_domain = false
  local block = domain_block(data.domain, sender_domain)
  if block then
    msg:dkim_sign(make_signer(block, base, sender_domain))
    signed_domain = true
  end
  for _, signame in ipairs(base.additional_signatures or {}) do
    local signature = data.signature[signame]
    if not (signature.policy == 'OnlyIfMissingDomainBlock' and signed_domain) then
      msg:dkim_sign(make_signer(signature, base, signature.domain))
    end
  end
end

function mod:setup(files)
  if mod.CONFIGURED then
    error('policy-extras.dkim_sign: setup has already been called', 2)
  end
  if type(files) ~= 'table' then
    error('policy-extras.dkim_sign: setup expects a list of data files', 2)
  end
  local data = load_data(files)
  mod.CONFIGURED = { data_files = files }
  return function(msg)
    sign(msg, data)
  end
end

return mod
