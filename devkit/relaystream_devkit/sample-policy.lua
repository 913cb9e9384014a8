-- The policy `relaystream dev` runs: KumoMTA-compatible Lua (see ../shared/spec/SEED-routing.txt).
--
-- Every message is smarthosted to the local sample sink with a routing domain, so it lands in
-- the scheduled queue `<recipient domain>![127.0.0.1]:2526`: one queue per destination domain,
-- tenant and campaign kept, delivered to the sink without DNS (a domain literal).

local SINK = '[127.0.0.1]:2526'

local function smarthost_to_the_sink(msg)
  -- A tenant from a header, as an operator might do it (the core never reads headers itself).
  local tenant = msg:get_first_named_header_value('X-Tenant')
  if tenant then
    msg:set_meta('tenant', tenant)
  end
  msg:set_meta('routing_domain', SINK)
end

kumo.on('smtp_server_message_received', smarthost_to_the_sink)
kumo.on('http_message_generated', smarthost_to_the_sink)

kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  -- Local runs retry quickly; the defaults are 20 minutes and 7 days.
  return kumo.make_queue_config { retry_interval = '1m', max_age = '2h' }
end)

-- The other techniques of the founding document, for reference:
--
-- Rewrite the queue (tenant and campaign are then ignored for naming):
--   kumo.on('smtp_server_message_received', function(msg)
--     msg:set_meta('queue', 'my.smarthost.com')
--   end)
--
-- Override MX resolution for one domain's queues:
--   kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
--     if domain == 'domain.to.be.smart.hosted' then
--       return kumo.make_queue_config {
--         protocol = { smtp = { mx_list = { 'smart.host.local', { name = 'mx.example.com', addr = '10.0.0.1' } } } },
--       }
--     end
--     return kumo.make_queue_config {}
--   end)
