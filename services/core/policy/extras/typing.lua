-- policy-extras.typing is refused: it is the run-time type checker KumoMTA's own helper
-- modules are written with (typing.record, typing.map, ...), not something its policies
-- use; relaystream's helper modules check their data themselves.
-- Level 4: the policy's require call (this chunk, pcall, require_extra, policy: require
-- tail-calls require_extra).
error('policy-extras.typing is not available in relaystream: it is the internal type '
  .. "checker of KumoMTA's own policy-extras modules, which relaystream reimplements with "
  .. 'their own checks', 4)
