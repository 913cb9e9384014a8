"""Audit by replay: filters, summaries and diffs over recorded routing decisions and
queue-config changes. Pure: the Kafka side is `core.kafka.replay` and
`core.kafka.queue_config_store`; the commands are `relaystream audit` and `queue-config`."""
