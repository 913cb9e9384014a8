-- A policy written the way KumoMTA's own are (relaystream's, not a copy of KumoMTA's):
-- `require 'kumo'`, settings from the environment, listeners and spool set up in `init`,
-- and a KumoMTA event relaystream does not run yet.
local kumo = require 'kumo'

local SMARTHOST = os.getenv 'POLICY_TEST_SMARTHOST' or 'smarthost.example'
local started_at = nil

kumo.on('pre_init', function()
  started_at = os.date('!%Y-%m-%dT%H:%M:%SZ', os.time())
end)

kumo.on('init', function()
  kumo.start_esmtp_listener {
    listen = '0.0.0.0:2525',
    relay_hosts = { '127.0.0.1' },
  }
  kumo.start_http_listener {
    listen = '127.0.0.1:8000',
  }
  for _, name in ipairs { 'data', 'meta' } do
    kumo.define_spool {
      name = name,
      path = '/var/spool/kumomta/' .. name,
    }
  end
  kumo.configure_local_logs {
    log_dir = '/var/log/kumomta',
  }
end)

kumo.on('smtp_server_message_received', function(msg)
  msg:set_meta('routing_domain', SMARTHOST)
  msg:set_meta('policy_started_at', started_at)
end)

kumo.on('get_egress_path_config', function(domain, egress_source, site_name)
  return kumo.make_egress_path {
    enable_tls = 'Opportunistic',
  }
end)
