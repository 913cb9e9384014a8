kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
    if domain == 'domain.to.be.smart.hosted' then
        -- Relay via some other internal infrastructure.
        -- Enclose IP (or IPv6) addresses in `[]`.
        -- Otherwise the name will be resolved for A and AAAA records
        return kumo.make_queue_config {
            protocol = {
                smtp = {
                    mx_list = { 'smart.host.local', { name = 'mx.example.com', addr = '10.0.0.1' }}
                },
            },
        }
    end
    -- Otherwise, just use the defaults
    return kumo.make_queue_config {}
end)
