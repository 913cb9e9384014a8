"""Prometheus metrics of the routing service, in the process's default registry (/metrics)."""

from __future__ import annotations

from prometheus_client import Counter

DECISIONS = Counter(
    "relaystream_routing_decisions",
    "Routing decisions committed, by outcome: QUEUED, REJECTED, DISCARDED",
    ["outcome"],
)
