kumo.on('smtp_server_message_received', function(msg)
    msg:set_meta('routing_domain', 'my.smarthost.com')
end)
