-- policy-extras.docker_utils is refused: it finds KumoMTA's TSA daemon nodes and the Docker
-- network by running `getent` (io.popen), for kumo.start_esmtp_listener's relay_hosts and
-- the shaping helper's TSA publishing; relaystream runs no TSA daemon, its listener is
-- configured by its settings, and a policy may not run commands.
-- Level 4: the policy's require call (this chunk, pcall, require_extra, policy: require
-- tail-calls require_extra).
error('policy-extras.docker_utils is not available in relaystream: it resolves Docker '
  .. "service names with getent for KumoMTA's TSA daemon and listener relay_hosts; "
  .. "relaystream has no TSA daemon and ingest's relay networks are its settings "
  .. '(RELAYSTREAM_INGEST_RELAY_NETWORKS)', 4)
