-- kumo.configure_bounce_classifier{files = {...}}: KumoMTA's bounce classifier rules files.
-- Python reads and compiles them at the call (bounce_classifier.py), so a bad file fails the
-- policy's load at this line; the services that write log records then classify with them.
local lib = ...
local kumo, host_function = lib.kumo, lib.host_function

local configure = host_function("configure_bounce_classifier")

function kumo.configure_bounce_classifier(params)
  -- As JSON text: the parameters are a plain table, checked field by field in Python.
  configure(kumo.serde.json_encode(params))
end
