"""Prometheus metrics of the delivery service, in the process's default registry (/metrics).

KumoMTA's names where the meaning is the same: `total_messages_delivered`, `_transfail` and
`_fail` by `service` (`smtp_client` for all, `smtp_client:<source>-><site>@smtp_client` per
ready queue, i.e. per connection pool, so per egress source and site), `connection_count` and
`total_connection_count` (the same two label kinds), `delayed_due_to_message_rate_throttle`
by `queue` (the ready queue). KumoMTA has no name for the others: connection-rate waits and
TLS outcomes per ready queue (`relaystream_delivery_*`).
Per-ready-queue series are bounded (a busy MTA talks to hundreds of thousands of sites): the
least recently counted are dropped past `PER_QUEUE_SERIES`, as KumoMTA prunes idle queues.
Other labels stay low-cardinality: results, never message ids. Pool sizes are totals over
every pool, read from the pools at scrape time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from ..core.runtime.kumo_metrics import (
    CONNECTION_COUNT,
    COUNTER_NAMES,
    SMTP_CLIENT,
    KumoCounter,
    smtp_client_service,
)
from .pool import ConnectionPool, PoolRegistry

PER_QUEUE_SERIES = 2_000
DELIVERED = KumoCounter(
    "total_messages_delivered",
    "total number of messages ever delivered",
    ("service",),
    max_series=PER_QUEUE_SERIES,
)
TRANSFAILED = KumoCounter(
    "total_messages_transfail",
    "total number of message delivery attempts that transiently failed",
    ("service",),
    max_series=PER_QUEUE_SERIES,
)
FAILED = KumoCounter(
    "total_messages_fail",
    "total number of message delivery attempts that permanently failed",
    ("service",),
    max_series=PER_QUEUE_SERIES,
)
_BY_KIND = {"DELIVERED": DELIVERED, "TRANSIENT_FAILURE": TRANSFAILED, "BOUNCE": FAILED}
CONNECTIONS_OPENED = KumoCounter(
    "total_connection_count", "total number of active connections ever made", ("service",)
)
DELIVERY_SECONDS = Histogram(
    "relaystream_delivery_latency_seconds",
    "Time from taking a DeliveryRequest to knowing its result (planning, DNS, SMTP)",
    ["result"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
CONNECT_FAILURES = Counter(
    "relaystream_delivery_connect_failures",
    "Candidate addresses that failed to give a ready SMTP session",
)

TLS_OUTCOMES = KumoCounter(
    "relaystream_delivery_tls_outcomes",
    "new SMTP connections by TLS outcome: tls (STARTTLS done), plaintext, or failed (the "
    "egress path's enable_tls could not be honoured: no STARTTLS, refused, bad handshake)",
    ("service", "outcome"),
    max_series=PER_QUEUE_SERIES,
)
FORWARDED_TO_SITE_OWNER = Counter(
    "relaystream_delivery_forwarded_to_site_owner",
    "Requests handed to the `attempts` partition that owns their site (deployment-wide limits)",
)

FINISHED_ATTEMPT_SCANS = Counter(
    "relaystream_delivery_finished_attempt_scans",
    "Reads of an `outcomes` partition at the start of an assignment (see finished_attempts.py)",
)
SKIPPED_FINISHED_ATTEMPTS = Counter(
    "relaystream_delivery_skipped_finished_attempts",
    "Requests handed out again whose outcome was already written: not sent twice",
)


def note_new_connection(ready_queue: str, tls: bool) -> None:
    service = smtp_client_service(ready_queue)
    CONNECTIONS_OPENED.inc(SMTP_CLIENT)
    CONNECTIONS_OPENED.inc(service)
    TLS_OUTCOMES.inc(service, "tls" if tls else "plaintext")


def note_tls_failures(ready_queue: str, count: int) -> None:
    if count:
        TLS_OUTCOMES.inc(smtp_client_service(ready_queue), "failed", amount=count)


def pool_created(pool: ConnectionPool) -> None:
    """A pool's own connection_count series, read from the pool at scrape time."""
    CONNECTION_COUNT.labels(smtp_client_service(pool.key.ready_queue)).set_function(
        lambda: pool.connections
    )


def pool_forgotten(pool: ConnectionPool) -> None:
    with contextlib.suppress(KeyError):
        CONNECTION_COUNT.remove(smtp_client_service(pool.key.ready_queue))


def note_attempt(kind: str, ready_queue: str | None) -> None:
    """One attempt's result (`kind` as AttemptResult's), overall and for its ready queue."""
    counter = _BY_KIND[kind]
    counter.inc(SMTP_CLIENT)
    if ready_queue is not None:
        counter.inc(smtp_client_service(ready_queue))


class PoolSizeCollector(Collector):
    """Open and idle SMTP connections, and pools, summed over the registry's pools."""

    def __init__(self, pools: Callable[[], PoolRegistry | None]) -> None:
        self._pools = pools

    def collect(self) -> Iterator[Metric]:
        registry = self._pools()
        pools = registry.pools() if registry is not None else []
        yield GaugeMetricFamily(
            "relaystream_delivery_idle_connections",
            "SMTP connections held open by the pools for reuse, not in use",
            value=sum(pool.idle_connections for pool in pools),
        )
        yield GaugeMetricFamily(
            "relaystream_delivery_connection_pools",
            "Connection pools (one per egress source and site) currently known",
            value=len(pools),
        )
        ready = GaugeMetricFamily(
            "ready_count", "number of messages in the ready queue", labels=["service"]
        )
        states = GaugeMetricFamily(
            "relaystream_delivery_ready_queue_state",
            "1 while a ready queue is in a state (connection_limited, "
            "connection_rate_throttled, message_rate_throttled): deliveries are waiting on it",
            labels=["queue", "state"],
        )
        for pool in pools:
            if pool.ready_count:
                ready.add_metric([smtp_client_service(pool.key.ready_queue)], pool.ready_count)
            for state in pool.states:
                states.add_metric([pool.key.ready_queue, state], 1)
        yield ready
        yield states
        # Counters of the pools alive now (a pool forgotten when idle takes its series along,
        # as KumoMTA prunes idle ready queues).
        for name, documentation, attribute in _POOL_COUNTERS:
            # Typed untyped, as KumoCounter does: KumoMTA's counter names carry no `_total`.
            family = Metric(name, documentation, "unknown")
            for pool in pools:
                family.add_sample(name, {"queue": pool.key.ready_queue}, getattr(pool, attribute))
            yield family

    def describe(self) -> Iterator[Metric]:
        return iter(())


_POOL_COUNTERS = (
    (
        "delayed_due_to_message_rate_throttle",
        "Number of times a message was delayed due to max_message_rate",
        "throttled_messages",
    ),
    (
        "relaystream_delivery_delayed_due_to_connection_rate_throttle",
        "Number of times a new connection waited for the egress path's max_connection_rate",
        "throttled_connections",
    ),
)


COUNTER_NAMES.update(name for name, _, _ in _POOL_COUNTERS)


class CurrentPools:
    """The pools of the running delivery service (one per process), for the collector."""

    registry: PoolRegistry | None = None


CURRENT_POOLS = CurrentPools()
REGISTRY.register(PoolSizeCollector(lambda: CURRENT_POOLS.registry))


def _open_connections() -> int:
    registry = CURRENT_POOLS.registry
    return 0 if registry is None else sum(pool.connections for pool in registry.pools())


# SMTP connections held by the pools, in use or idle (KumoMTA's connection_count).
CONNECTION_COUNT.labels(SMTP_CLIENT).set_function(_open_connections)
