"""relaystream's devkit: local development, chaos and benchmark tooling, installed from a
checkout beside the product (`./scripts/bootstrap`) and never into the container image."""
