-- Not a KumoMTA namespace: what relaystream's policy-extras modules (extras/*.lua) may use
-- beyond a policy's own environment. `require` hands this table to each module as its
-- second argument; a policy never sees it unless a module gives it away (none does).
local lib = ...
local string_match, string_gsub, tostring = string.match, string.gsub, tostring

local host = {
  -- One warning in relaystream's policy log, logged once per policy load.
  warn = lib.host_function("extras_warn"),
  -- queue_config_field(name, json_value): "field" (its value is good), "tuning" (a KumoMTA
  -- queue tuning field that means nothing here) or "unknown"; a bad value is an error.
  queue_config_field = lib.host_function("extras_queue_config_field"),
  -- ascii_domain(name): a domain as queue names spell it (A-labels, lower case; '*.' kept).
  ascii_domain = lib.host_function("extras_ascii_domain"),
  -- declare_log_hook(json_declaration): a policy-extras.log_hooks hook (domain/log_hook.py).
  declare_log_hook = lib.host_function("extras_declare_log_hook"),
}

-- The entry of `domain` in a table keyed by domain names (written as ascii_domain spells
-- them): its exact name, else the nearest wildcard above it ('*.example.com' matches
-- 'mx.example.com' and 'a.mx.example.com', not 'example.com'), else nil. KumoMTA's
-- domain_map, which its queue and listener_domains helpers look domains up in.
function host.domain_entry(entries, domain)
  domain = host.ascii_domain(domain)
  local exact = entries[domain]
  if exact ~= nil then
    return exact
  end
  local rest = string_match(domain, "^[^.]*%.(.+)$")
  while rest ~= nil do
    local wildcard = entries["*." .. rest]
    if wildcard ~= nil then
      return wildcard
    end
    rest = string_match(rest, "^[^.]*%.(.+)$")
  end
  return nil
end

-- Whether an error caught with pcall must be raised again as it is: the call's instruction
-- budget or deadline ran out, or memory did.
host.is_fatal = lib.is_fatal

-- An error's text without the "file:line: " where it was raised (a helper adds its own
-- context: the data file and key).
function host.error_text(err)
  return (string_gsub(tostring(err), "^[^:\n]*:%d+: ", ""))
end

-- Who the client authenticated as, from a message's or a connection's meta: KumoMTA's
-- authz_id, else relaystream ingest's authn_id (the identity that authenticated, which is the
-- authorization identity when the client asks for none).
function host.authorization_id(meta_holder)
  return meta_holder:get_meta("authz_id") or meta_holder:get_meta("authn_id")
end

lib.extras_host = host
