"""KumoMTA's log hooks (policy-extras.log_hooks) on relaystream's log topic."""
