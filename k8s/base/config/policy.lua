-- Sample routing policy (KumoMTA's policy API). Replace it with yours: it is mounted from the
-- relaystream-config ConfigMap (k8s/base/config/policy.lua).

kumo.on('smtp_server_message_received', function(msg)
  -- One tenant per sending application, one campaign per mailing, from headers the
  -- submitting applications set. Queues are then named campaign:tenant@domain.
  local tenant = msg:get_first_named_header_value('X-Tenant')
  if tenant then
    msg:set_meta('tenant', tenant)
  end
  local campaign = msg:get_first_named_header_value('X-Campaign')
  if campaign then
    msg:set_meta('campaign', campaign)
  end
end)

kumo.on('http_message_generated', function(msg)
  msg:set_meta('tenant', 'http-api')
end)

kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  if domain == 'gmail.com' or domain == 'googlemail.com' then
    -- A large mailbox provider: pace each scheduled queue.
    return kumo.make_queue_config {
      max_message_rate = '100/s',
      max_retry_interval = '4 hours',
    }
  end
  -- Everything else: KumoMTA's defaults (20 minute base retry, 7 day maximum age).
  return kumo.make_queue_config {}
end)
