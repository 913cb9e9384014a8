"""Optional integrations of upstream frameworks with relaystream's events; each needs an extra
(`pip install relaystream[faust]`) and none is imported by the services."""
