-- kumo.serde: JSON, TOML and YAML to and from Lua values, and the older top-level names
-- KumoMTA's policies still use (kumo.json_load, kumo.toml_parse, ...). Parsing is Python's
-- (host callbacks, serde.py); encoding goes through the sandbox's JSON encoder first, so
-- only JSON-representable values are accepted, as in KumoMTA.
local lib = ...
local kumo, host_function = lib.kumo, lib.host_function
local encode_value, is_fatal, policy_location = lib.encode_value, lib.is_fatal, lib.policy_location
local pcall, error, tostring = pcall, error, tostring

local function as_json(function_name, value)
  local ok, text = pcall(encode_value, value, 0)
  if not ok then
    if is_fatal(text) then
      error(text, 0)
    end
    error(policy_location(2) .. function_name .. ": " .. tostring(text), 0)
  end
  return text
end

local json_pretty = host_function("serde_json_pretty")
local toml_encode = host_function("serde_toml_encode")
local yaml_encode = host_function("serde_yaml_encode")

local serde = {
  json_parse = host_function("serde_json_parse"),
  json_load = host_function("serde_json_load"),
  toml_parse = host_function("serde_toml_parse"),
  toml_load = host_function("serde_toml_load"),
  yaml_parse = host_function("serde_yaml_parse"),
  yaml_load = host_function("serde_yaml_load"),
}

-- nil encodes as JSON null, as in KumoMTA (serde_json of Lua's nil): a policy that logs
-- what msg:import_scheduling_header returned encodes nil when the header is absent.
function serde.json_encode(value)
  if value == nil then
    return "null"
  end
  return as_json("json_encode", value)
end

function serde.json_encode_pretty(value)
  if value == nil then
    return "null"
  end
  return json_pretty(as_json("json_encode_pretty", value))
end

function serde.toml_encode(value)
  return toml_encode(as_json("toml_encode", value), false)
end

function serde.toml_encode_pretty(value)
  return toml_encode(as_json("toml_encode_pretty", value), true)
end
serde.toml_encode_pretty_compact = serde.toml_encode_pretty

function serde.yaml_encode(value)
  return yaml_encode(as_json("yaml_encode", value))
end

kumo.serde = serde
-- The names KumoMTA had before kumo.serde (2024.09); its example policies use them.
for _, name in next, { "json_parse", "json_load", "json_encode_pretty", "toml_parse",
  "toml_load", "toml_encode", "toml_encode_pretty" } do
  kumo[name] = serde[name]
end
