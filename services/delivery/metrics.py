"""Prometheus metrics of the delivery service, in the process's default registry (/metrics).

Labels stay low-cardinality: results and TLS, never sites, queues or message ids (a busy MTA
talks to hundreds of thousands of sites). Pool sizes are totals over every pool, read from the
pools at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .pool import PoolRegistry

DELIVERIES = Counter(
    "relaystream_delivery_attempts",
    "Delivery attempts by result: delivered, transient_failure, bounce",
    ["result"],
)
DELIVERY_SECONDS = Histogram(
    "relaystream_delivery_latency_seconds",
    "Time from taking a DeliveryRequest to knowing its result (planning, DNS, SMTP)",
    ["result"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
CONNECTIONS_OPENED = Counter(
    "relaystream_delivery_connections_opened",
    "SMTP sessions made ready (banner, EHLO, STARTTLS per the TLS mode)",
    ["tls"],
)
CONNECT_FAILURES = Counter(
    "relaystream_delivery_connect_failures",
    "Candidate addresses that failed to give a ready SMTP session",
)

FINISHED_ATTEMPT_SCANS = Counter(
    "relaystream_delivery_finished_attempt_scans",
    "Reads of an `outcomes` partition at the start of an assignment (see finished_attempts.py)",
)
SKIPPED_FINISHED_ATTEMPTS = Counter(
    "relaystream_delivery_skipped_finished_attempts",
    "Requests handed out again whose outcome was already written: not sent twice",
)


class PoolSizeCollector(Collector):
    """Open and idle SMTP connections, and pools, summed over the registry's pools."""

    def __init__(self, pools: Callable[[], PoolRegistry | None]) -> None:
        self._pools = pools

    def collect(self) -> Iterator[GaugeMetricFamily]:
        registry = self._pools()
        pools = registry.pools() if registry is not None else []
        connections = GaugeMetricFamily(
            "relaystream_delivery_connections",
            "SMTP connections held by the pools, by state (idle or in use)",
            labels=["state"],
        )
        idle = sum(pool.idle_connections for pool in pools)
        in_use = sum(pool.connections for pool in pools) - idle
        connections.add_metric(["idle"], idle)
        connections.add_metric(["in_use"], in_use)
        yield connections
        yield GaugeMetricFamily(
            "relaystream_delivery_connection_pools",
            "Connection pools (one per egress source and site) currently known",
            value=len(pools),
        )

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


class CurrentPools:
    """The pools of the running delivery service (one per process), for the collector."""

    registry: PoolRegistry | None = None


CURRENT_POOLS = CurrentPools()
REGISTRY.register(PoolSizeCollector(lambda: CURRENT_POOLS.registry))
