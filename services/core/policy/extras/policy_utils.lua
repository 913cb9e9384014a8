-- policy-extras.policy_utils: the small helpers KumoMTA's policies and its other
-- policy-extras modules share (table merging and comparison, string prefixes and suffixes,
-- loading a JSON or TOML data file). Written for relaystream; same names and behaviour.
local kumo = require 'kumo'

local utils = {}

-- Deep equality of two values; tables compare by content. A table with an __eq metamethod
-- compares with it unless `ignore_mt` is set.
function utils.equals(a, b, ignore_mt)
  if a == b then
    return true
  end
  if type(a) ~= 'table' or type(b) ~= 'table' then
    return false
  end
  if not ignore_mt then
    local mt = getmetatable(a)
    if type(mt) == 'table' and mt.__eq then
      return false -- `a == b` above already asked __eq
    end
  end
  for key, value in pairs(a) do
    local other = b[key]
    if other == nil or not utils.equals(value, other, ignore_mt) then
      return false
    end
  end
  for key in pairs(b) do
    if a[key] == nil then
      return false
    end
  end
  return true
end

local function shown(value)
  local ok, text = pcall(kumo.json_encode, value)
  if ok then
    return text
  end
  return tostring(value)
end

local function prefixed(message)
  if message then
    return tostring(message) .. '. '
  end
  return ''
end

function utils.assert_eq(a, b, message)
  if not utils.equals(a, b) then
    error(
      string.format('%sexpected\n%s\n == \n%s', prefixed(message), shown(a), shown(b)),
      2
    )
  end
end

function utils.assert_ne(a, b, message)
  if utils.equals(a, b) then
    error(
      string.format('%sexpected\n%s\n != \n%s', prefixed(message), shown(a), shown(b)),
      2
    )
  end
end

-- KumoMTA matches with its regex engine: kumo.regex (RE2 here, the same syntax).
function utils.assert_matches(text, pattern, message)
  if not kumo.regex.compile(pattern):is_match(text) then
    error(
      string.format('%sexpected\n "%s"\n to match\n "%s"', prefixed(message), text, pattern),
      2
    )
  end
end

-- Copies each key of `src` (when given) into `dest`, replacing what is there.
function utils.merge_into(src, dest)
  if src == nil then
    return
  end
  for key, value in pairs(src) do
    dest[key] = value
  end
end

-- Like merge_into, but a table value merges into the table `dest` already has at that key.
function utils.recursive_merge_into(src, dest)
  if src == nil then
    return
  end
  for key, value in pairs(src) do
    local existing = dest[key]
    if type(value) == 'table' and type(existing) == 'table' then
      utils.recursive_merge_into(value, existing)
    else
      dest[key] = value
    end
  end
end

function utils.table_contains(tbl, wanted)
  if wanted == nil then
    return false
  end
  for _, value in pairs(tbl) do
    if value == wanted then
      return true
    end
  end
  return false
end

function utils.table_keys(tbl)
  local keys = {}
  for key in pairs(tbl) do
    keys[#keys + 1] = key
  end
  return keys
end

function utils.table_is_empty(tbl)
  return next(tbl) == nil
end

-- A data file's parsed contents: `*.toml` as TOML, anything else as JSON (comments allowed).
-- A table is taken as already-loaded data, so helpers' setup lists may mix both.
function utils.load_json_or_toml_file(file_name)
  if type(file_name) == 'table' then
    return file_name
  end
  if type(file_name) ~= 'string' then
    error('load_json_or_toml_file: expected a file name or a table, got a ' .. type(file_name), 2)
  end
  if utils.ends_with(file_name, '.toml') then
    return kumo.toml_load(file_name)
  end
  return kumo.json_load(file_name)
end

function utils.starts_with(s, prefix)
  return string.sub(s, 1, #prefix) == prefix
end

function utils.ends_with(s, suffix)
  return suffix == '' or string.sub(s, -#suffix) == suffix
end

-- "10.0.0.1:25" -> "10.0.0.1", "25"; "[::1]:25" -> "::1", "25".
function utils.split_ip_port(ip_port)
  local ip, port = string.match(ip_port, '^(.*):(%d+)$')
  if ip == nil then
    error('split_ip_port: expected ADDRESS:PORT, got ' .. tostring(ip_port), 2)
  end
  return string.match(ip, '^%[(.*)%]$') or ip, port
end

local function dump(value, indent, seen)
  local kind = type(value)
  if kind == 'number' or kind == 'boolean' then
    return tostring(value)
  end
  if kind ~= 'table' then
    return string.format('%q', tostring(value))
  end
  local mt = getmetatable(value)
  if type(mt) == 'table' and mt.__tostring then
    return tostring(value)
  end
  if seen[value] then
    return '[recursive node]'
  end
  seen[value] = true
  local keys = utils.table_keys(value)
  table.sort(keys, function(x, y)
    if type(x) == type(y) then
      return x < y
    end
    return type(x) < type(y)
  end)
  local lines = {}
  for i, key in ipairs(keys) do
    lines[i] = string.rep(' ', indent)
      .. string.format('[%q] = %s', key, dump(value[key], indent + 2, seen))
  end
  seen[value] = nil
  if #lines == 0 then
    return '{}'
  end
  return '{\n' .. table.concat(lines, ',\n') .. '\n' .. string.rep(' ', indent - 2) .. '}'
end

-- A readable Lua-like rendering of a value, for debugging output.
function utils.dumps(value)
  if value == nil then
    return nil
  end
  return dump(value, 2, {})
end

return utils
