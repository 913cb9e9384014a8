-- kumo.shaping.load(files, options): KumoMTA's shaping data (shaping.toml/json), merged and
-- looked up in Python (shaping.py, the shaping domain model). The object it returns:
-- get_egress_path_config(domain, egress_source, site_name) -> the merged fields (a table to
-- pass to kumo.make_egress_path), get_errors(), get_warnings(), hash(),
-- get_referenced_sources(). match_rules (TSA) is refused: relaystream does not run TSA.
local lib = ...
local kumo, host_function = lib.kumo, lib.host_function
local encode_value, is_fatal, policy_location = lib.encode_value, lib.is_fatal, lib.policy_location
local setmetatable, pcall, error, type, tostring = setmetatable, pcall, error, type, tostring

local load_data = host_function("shaping_load")
local get_path = host_function("shaping_get_egress_path_config")
local referenced_sources = host_function("shaping_referenced_sources")
local warn = host_function("shaping_warn")

local handles = setmetatable({}, { __mode = "k" }) -- object -> Python handle

local Shaping = {}
local ShapingMeta = { __index = Shaping, __metatable = false, __name = "Shaping" }

local function handle_of(self, method)
  local handle = handles[self]
  if handle == nil then
    error(policy_location(3) .. "call it as shaping:" .. method .. "(...), with a colon", 0)
  end
  return handle
end

function Shaping:get_egress_path_config(domain, egress_source, site_name)
  return get_path(handle_of(self, "get_egress_path_config"), domain, egress_source, site_name)
end

function Shaping:get_errors()
  return lib.deep_copy(handles[self] and self._errors or {}, 0)
end

function Shaping:get_warnings()
  return lib.deep_copy(handles[self] and self._warnings or {}, 0)
end

function Shaping:hash()
  handle_of(self, "hash")
  return self._hash
end

function Shaping:get_referenced_sources()
  return referenced_sources(handle_of(self, "get_referenced_sources"))
end

function Shaping:match_rules()
  error(policy_location(2) .. "shaping:match_rules: relaystream does not run TSA automation", 0)
end

local shaping = {}

function shaping.load(files, options)
  if type(files) ~= "table" then
    error(policy_location(2) .. "kumo.shaping.load: expected a list of file names, got a "
      .. type(files), 0)
  end
  local ok, text = pcall(encode_value, { files = files, options = options }, 0)
  if not ok then
    if is_fatal(text) then
      error(text, 0)
    end
    error(policy_location(2) .. "kumo.shaping.load: " .. tostring(text), 0)
  end
  local loaded = load_data(text)
  local object = setmetatable({ _errors = loaded.errors or {}, _warnings = loaded.warnings or {},
    _hash = loaded.hash }, ShapingMeta)
  handles[object] = loaded.handle
  return object
end

-- relaystream's own: the policy-extras modules say loudly what relaystream does not do.
function shaping.relaystream_warn(text)
  warn(policy_location(2), tostring(text))
end

kumo.shaping = shaping
