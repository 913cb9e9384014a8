"""Prometheus metrics of the routing service, in the process's default registry (/metrics)."""

from __future__ import annotations

from prometheus_client import Counter

DECISIONS = Counter(
    "relaystream_routing_decisions",
    "Routing decisions by outcome: QUEUED, REJECTED, DISCARDED",
    ["outcome"],
)
DUPLICATES = Counter(
    "relaystream_routing_duplicates_skipped",
    "Accepted messages skipped because their id was already decided (a redelivery)",
)
PRODUCE_RETRIES = Counter(
    "relaystream_routing_produce_retries",
    "Times producing a decision's outputs failed and was retried",
)
