-- kumo.dns (dns.py): the policy's own lookups, each bounded by what is left of the running
-- call's deadline, and the calls that configure them. Configuring says once, in the log,
-- that it is the policy's lookups that change, not delivery's MX resolution.
local lib = ...
local kumo, host_function, remaining_seconds = lib.kumo, lib.host_function, lib.remaining_seconds
local encode_value, policy_location, is_fatal = lib.encode_value, lib.policy_location, lib.is_fatal
local host_warning = host_function("dns_configured")
local pcall, error, tostring = pcall, error, tostring
local table_concat = table.concat

local function as_json(function_name, value)
  local ok, text = pcall(encode_value, value, 0)
  if not ok then
    if is_fatal(text) then
      error(text, 0)
    end
    error(policy_location(3) .. "kumo.dns." .. function_name .. ": " .. tostring(text), 0)
  end
  return text
end

-- kumo.dns may already hold the tuning calls accepted with a log line (set_mx_timeout, ...).
local dns = kumo.dns or {}

local configure = host_function("dns_configure")
local configure_test = host_function("dns_configure_test")
local define = host_function("dns_define")

local function configured(function_name, ignored)
  host_warning(policy_location(3), function_name, table_concat(ignored or {}, ", "))
end

function dns.configure_resolver(params)
  configured("configure_resolver", configure(as_json("configure_resolver", params)))
end

function dns.configure_unbound_resolver(params)
  configured("configure_unbound_resolver",
    configure(as_json("configure_unbound_resolver", params), true))
end

function dns.configure_test_resolver(zones)
  configured("configure_test_resolver", configure_test(as_json("configure_test_resolver", zones)))
end

function dns.define_resolver(name, params)
  configured("define_resolver", define(name, as_json("define_resolver", params)))
end

dns.load_resolv_conf = host_function("dns_load_resolv_conf")
dns.ptr_host = host_function("dns_ptr_host")
dns.reverse_ip = host_function("dns_reverse_ip")

local lookup_mx = host_function("dns_lookup_mx")
local lookup_txt = host_function("dns_lookup_txt")
local lookup_addr = host_function("dns_lookup_addr")
local lookup_ptr = host_function("dns_lookup_ptr")
local rbl_lookup = host_function("dns_rbl_lookup")

function dns.lookup_mx(domain, resolver)
  return lookup_mx(domain, resolver, remaining_seconds())
end

function dns.lookup_txt(domain, resolver)
  return lookup_txt(domain, resolver, remaining_seconds())
end

function dns.lookup_addr(name, resolver, strategy)
  return lookup_addr(name, resolver, strategy, remaining_seconds())
end

function dns.lookup_ptr(ip, resolver)
  return lookup_ptr(ip, resolver, remaining_seconds())
end

-- Two values, as KumoMTA: the listed address and its TXT reason, or nil, nil.
function dns.rbl_lookup(ip, base_domain, resolver)
  local answer = rbl_lookup(ip, base_domain, resolver, remaining_seconds())
  return answer[1], answer[2]
end

kumo.dns = dns
