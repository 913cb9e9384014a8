-- kumo.string (string.py): KumoMTA's string functions beyond Lua's own library.
-- normalize_smtp_response is refused (kumo_surface.REFUSED): its tokenizer is KumoMTA's own.
local lib = ...
local kumo, host_function, encode_value = lib.kumo, lib.host_function, lib.encode_value
local policy_location, is_fatal = lib.policy_location, lib.is_fatal
local next, pcall, error, tostring = next, pcall, error, tostring

local string_functions = {}
for _, name in next, { "split", "splitn", "rsplit", "rsplitn", "split_whitespace",
  "split_ascii_whitespace", "trim", "trim_start", "trim_end", "replace", "replacen",
  "starts_with", "ends_with", "wrap", "psl_domain", "psl_suffix" } do
  string_functions[name] = host_function("string_" .. name)
end

local eval_template = host_function("string_eval_template")
function string_functions.eval_template(name, source, context, dialect)
  local context_json = nil
  if context ~= nil then
    local ok, text = pcall(encode_value, context, 0)
    if not ok then
      if is_fatal(text) then
        error(text, 0)
      end
      error(policy_location(2) .. "kumo.string.eval_template: the context: " .. tostring(text), 0)
    end
    context_json = text
  end
  return eval_template(name, source, context_json, dialect)
end

kumo.string = string_functions
