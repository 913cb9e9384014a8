-- policy-extras.rollup: KumoMTA's MX rollup helpers, written for relaystream with the same
-- API. Both reroute a message (meta routing_domain) by the MX hosts of its recipient domain,
-- so that domains served by one provider share its queues and shaping:
--
--   reroute_based_on_mx_host_suffix(msg, { ['.olc.protection.outlook.com.'] = 'outlook.com' })
--     every MX host ends with the suffix: routing_domain = 'outlook.com'
--   reroute_using_ip_rollup(msg, { ['.mail.protection.outlook.com.'] = 'outlook.ip_rollup' })
--     every lowest-preference MX host ends with the suffix: routing_domain = the mapped
--     '.ip_rollup' name, and apply_ip_rollup_to_queue_config(domain, routing_domain, params)
--     (in get_queue_config) sends that queue to those hosts' addresses (mx_list).
--
-- As in KumoMTA, a lookup that fails leaves the message's routing as it was, and says so.
local kumo = require 'kumo'
local utils = require 'policy-extras.policy_utils'
local host = select(2, ...)

local mod = {}

local IP_ROLLUP_SUFFIX = '.ip_rollup'

local function dns()
  return kumo.dns
end

local function all_end_with(hosts, suffix)
  for _, name in ipairs(hosts) do
    if not utils.ends_with(name, suffix) then
      return false
    end
  end
  return true
end

-- The hosts of the lowest preference (the most preferred) in an MX answer.
local function preferred_hosts(mx)
  local lowest, hosts = nil, nil
  for preference, names in pairs(mx.by_pref) do
    preference = tonumber(preference)
    if lowest == nil or preference < lowest then
      lowest, hosts = preference, names
    end
  end
  return hosts or {}
end

local function recipient_domain(msg)
  return msg:recipient().domain
end

-- Runs `reroute`; a failure (DNS) is logged and the message keeps its routing.
local function keep_routing_on_failure(what, reroute)
  local ok, err = pcall(reroute)
  if not ok then
    if host.is_fatal(err) or string.find(tostring(err), 'relaystream does not provide') then
      error(err, 0)
    end
    host.warn('policy-extras.rollup: ' .. what .. ' failed, routing unchanged: ' .. tostring(err))
  end
end

function mod.reroute_based_on_mx_host_suffix(msg, mapping)
  keep_routing_on_failure('mx host suffix rollup', function()
    local domain = recipient_domain(msg)
    local mx = dns().lookup_mx(domain)
    for suffix, routing_domain in pairs(mapping) do
      if all_end_with(mx.hosts, suffix) then
        if routing_domain ~= domain then
          msg:set_meta('routing_domain', routing_domain)
        end
        return
      end
    end
  end)
end

function mod.reroute_using_ip_rollup(msg, mapping)
  keep_routing_on_failure('ip rollup', function()
    local hosts = preferred_hosts(dns().lookup_mx(recipient_domain(msg)))
    for suffix, routing_domain in pairs(mapping) do
      if all_end_with(hosts, suffix) then
        msg:set_meta('routing_domain', routing_domain)
        return
      end
    end
  end)
end

-- For a queue whose routing_domain is an '.ip_rollup' name: params.protocol.smtp.mx_list =
-- the addresses of the domain's most preferred MX hosts, in a stable order.
function mod.apply_ip_rollup_to_queue_config(domain, routing_domain, params)
  if routing_domain == nil or not utils.ends_with(routing_domain, IP_ROLLUP_SUFFIX) then
    return
  end
  local resolver = dns()
  local mx_list = {}
  for _, name in ipairs(preferred_hosts(resolver.lookup_mx(domain))) do
    local addresses = resolver.lookup_addr(name)
    table.sort(addresses)
    for _, address in ipairs(addresses) do
      mx_list[#mx_list + 1] = { name = name, addr = address }
    end
  end
  params.protocol = { smtp = { mx_list = mx_list } }
end

return mod
