-- kumo.log_error, log_warn, log_info, log_debug: the arguments, each as tostring gives it,
-- joined by spaces, to the service's structured log at that level, with the policy file and
-- line that logged it (log.py).
local lib = ...
local kumo, policy_location, as_text, host_function = lib.kumo, lib.policy_location, lib.as_text, lib.host_function
local tostring, select, table_concat = tostring, select, table.concat

local log = host_function("log_policy")

for _, level in next, { "error", "warn", "info", "debug" } do
  kumo["log_" .. level] = function(...)
    local parts = {}
    for i = 1, select("#", ...) do
      parts[i] = as_text(tostring((select(i, ...))))
    end
    log(level, policy_location(2), table_concat(parts, " "))
  end
end
