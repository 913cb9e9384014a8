"""Prometheus metrics of the scheduling service (served on /metrics by the health endpoint
and the admin API).

The held messages per queue are KumoMTA's gauges, read from the owned partitions at scrape
time: `scheduled_count{queue}` (waiting), `scheduled_count_total`, `scheduled_queue_count`,
`scheduled_by_domain{domain}`, and `ready_count{service="smtp_client"}`, the messages released
to delivery and awaiting an outcome (relaystream's ready stage).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..core.domain.queue_name import QueueName, QueueNameError
from ..core.runtime.kumo_metrics import SMTP_CLIENT
from .state import QueueCounts

DUE_MESSAGES = Gauge(
    "relaystream_scheduling_due_messages", "waiting messages already due (throttled or pending)"
)
RELEASES = Counter("relaystream_scheduling_releases", "DeliveryRequests produced")
SPOOL_FETCHES = Counter(
    "relaystream_scheduling_spool_fetches",
    "queued records fetched back by offset (not released from the record just read)",
)
REQUEUES = Counter("relaystream_scheduling_requeues", "transient failures scheduled for retry")
EXPIRATIONS = Counter("relaystream_scheduling_expirations", "messages expired after max_age")
COMPLETIONS = Counter(
    "relaystream_scheduling_completions", "messages removed after delivery or bounce", ["kind"]
)
REBUILD_SECONDS = Gauge(
    "relaystream_scheduling_rebuild_seconds",
    "from an assignment to every newly assigned partition built (0: none was new)",
)
PARTITION_BUILDS = Counter(
    "relaystream_scheduling_partition_builds",
    "queued partitions built from the spool (a kept partition is not built again)",
    ["partition"],
)
PARTITION_BUILD_SECONDS = Gauge(
    "relaystream_scheduling_partition_build_seconds",
    "duration of the partition's last build (spool and recent attempts read)",
    ["partition"],
)
READY = Gauge("relaystream_scheduling_ready", "1 once every assigned partition is built")
ADMIN_ACTIONS = Counter(
    "relaystream_scheduling_admin_actions",
    "messages suspended (per due attempt), bounced or rebound by operator rules",
    ["action"],
)


def note_partition_built(partition: int, seconds: float) -> None:
    PARTITION_BUILDS.labels(str(partition)).inc()
    PARTITION_BUILD_SECONDS.labels(str(partition)).set(seconds)


class HeldMessagesCollector(Collector):
    """KumoMTA's scheduled and ready gauges over the partitions this instance owns."""

    def __init__(self, counts: Callable[[], dict[str, QueueCounts] | None]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = self._counts() or {}
        by_queue = GaugeMetricFamily(
            "scheduled_count", "number of messages in the scheduled queue", labels=["queue"]
        )
        by_domain: dict[str, int] = {}
        for queue, count in sorted(counts.items()):
            by_queue.add_metric([queue], count.waiting)
            try:
                domain = QueueName.parse(queue).domain
            except QueueNameError:
                domain = queue
            by_domain[domain] = by_domain.get(domain, 0) + count.waiting
        yield by_queue
        yield GaugeMetricFamily(
            "scheduled_count_total",
            "number of messages in all scheduled queues",
            value=sum(c.waiting for c in counts.values()),
        )
        yield GaugeMetricFamily(
            "scheduled_queue_count", "how many scheduled queues are held", value=len(counts)
        )
        domains = GaugeMetricFamily(
            "scheduled_by_domain",
            "number of messages in the scheduled queue for a specific domain",
            labels=["domain"],
        )
        for domain, waiting in sorted(by_domain.items()):
            domains.add_metric([domain], waiting)
        yield domains
        ready = GaugeMetricFamily(
            "ready_count",
            "number of messages released to delivery and awaiting an outcome",
            labels=["service"],
        )
        ready.add_metric([SMTP_CLIENT], sum(c.in_flight for c in counts.values()))
        yield ready

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


class CurrentScheduler:
    """The held messages of the running scheduler (one per process), for the collector."""

    counts: Callable[[], dict[str, QueueCounts]] | None = None


CURRENT = CurrentScheduler()
REGISTRY.register(HeldMessagesCollector(lambda: CURRENT.counts() if CURRENT.counts else None))
