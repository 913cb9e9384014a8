"""Prometheus metrics of the scheduling service (served on /metrics by the health endpoint)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

QUEUED_MESSAGES = Gauge(
    "relaystream_scheduling_queued_messages", "messages waiting or in flight in owned queues"
)
DUE_MESSAGES = Gauge(
    "relaystream_scheduling_due_messages", "waiting messages already due (throttled or pending)"
)
IN_FLIGHT_MESSAGES = Gauge(
    "relaystream_scheduling_in_flight_messages", "released attempts without an outcome yet"
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
