"""Prometheus metrics of the Kafka layer, in the process's default registry (served by /metrics).

Labels stay low-cardinality: topic names and partition numbers, never keys or message ids.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CONSUMED_RECORDS = Counter(
    "relaystream_kafka_consumed_records",
    "Records handed to a handler (or dead-lettered) by a consumer",
    ["group", "topic"],
)
PRODUCED_RECORDS = Counter(
    "relaystream_kafka_produced_records",
    "Records acknowledged by Kafka (acks=all)",
    ["topic"],
)
PRODUCE_FAILURES = Counter(
    "relaystream_kafka_produce_failures",
    "Records Kafka did not acknowledge",
    ["topic"],
)
DEAD_LETTERED_RECORDS = Counter(
    "relaystream_kafka_dead_lettered_records",
    "Records sent to the dead-letter topic, by the topic they came from",
    ["group", "topic"],
)
COMMITS = Counter(
    "relaystream_kafka_commits",
    "Offset commits of a consumer group",
    ["group", "result"],
)
CONSUMER_LAG = Gauge(
    "relaystream_kafka_consumer_lag_records",
    "Records between the partition's end and the next offset this consumer would commit",
    ["group", "topic", "partition"],
)
RECORDS_IN_FLIGHT = Gauge(
    "relaystream_kafka_records_in_flight",
    "Records handed to handlers that have not finished",
    ["group"],
)
REWOUND_BATCHES = Counter(
    "relaystream_kafka_rewound_batches",
    "Batches dropped unprocessed (fetched across a rebalance, or their transaction failed) "
    "and rewound to be fetched again",
    ["group"],
)
TRANSACTIONS = Counter(
    "relaystream_kafka_transactions",
    "Kafka transactions of consumed batches (consume-transform-produce), by result: "
    "committed or aborted",
    ["group", "result"],
)
