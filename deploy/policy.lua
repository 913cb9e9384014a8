-- Sample routing policy for docker compose: every message is delivered to the local mail sink
-- (the `mailsink` service), whatever its recipient domain, so nothing leaves your machine.
-- The policy API is KumoMTA's; see docs/deployment.md for a production-shaped example.

kumo.on('smtp_server_message_received', function(msg)
  -- A tenant per sending application: taken from a header here for the demo; a real
  -- deployment would derive it from the authenticated user or the listener.
  local tenant = msg:get_first_named_header_value('X-Tenant')
  if tenant then
    msg:set_meta('tenant', tenant)
  end
end)

kumo.on('http_message_generated', function(msg)
  msg:set_meta('tenant', 'http-api')
end)

kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {
    -- Short retries so that a stopped sink shows the retry schedule within minutes.
    retry_interval = '1m',
    max_retry_interval = '10m',
    max_age = '2 hours',
    protocol = {
      smtp = {
        -- Resolved for A/AAAA only (never MX): the sink's name on the compose network.
        mx_list = { 'mailsink:2526' },
      },
    },
  }
end)
