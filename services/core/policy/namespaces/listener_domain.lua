-- kumo.make_listener_domain: the object a get_listener_domain handler returns (relay_to,
-- relay_from, log_oob, log_arf). Checked by relaystream's model (domain/listener_domain.py);
-- the result is a plain table of the normalized fields, so policies can compare them.
local lib = ...
local kumo, host_function = lib.kumo, lib.host_function
local encode_value, is_fatal, policy_location = lib.encode_value, lib.is_fatal, lib.policy_location
local pcall, error, tostring, type = pcall, error, tostring, type

local make = host_function("listener_domain_make")

function kumo.make_listener_domain(params)
  if type(params) ~= "table" then
    error(policy_location(2) .. "kumo.make_listener_domain: expected a table, got a "
      .. type(params), 0)
  end
  local ok, text = pcall(encode_value, params, 0)
  if not ok then
    if is_fatal(text) then
      error(text, 0)
    end
    error(policy_location(2) .. "kumo.make_listener_domain: " .. tostring(text), 0)
  end
  return make(text)
end
