"""Metrics under KumoMTA's names (its docs/reference/kumod-metrics.json), where relaystream
measures the same thing, so dashboards and alerts written for KumoMTA work unchanged.

KumoMTA's counters carry no `_total` suffix (`total_messages_delivered`), which
prometheus_client's Counter always adds; `KumoCounter` exports the exact name (typed untyped
in the text exposition, `counter` in /metrics.json). A per-queue series set is bounded as
KumoMTA prunes idle queues: past `max_series`, the least recently counted series is dropped.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Gauge
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

# Names exported by a KumoCounter: /metrics.json reports their type as counter.
COUNTER_NAMES: set[str] = set()

# KumoMTA's `service` label values.
SMTP_CLIENT = "smtp_client"
ESMTP_LISTENER = "esmtp_listener"
HTTP_LISTENER = "http_listener"


# One family for every service's connections (ingest's sessions, delivery's pools), so a
# process running both exports it once.
CONNECTION_COUNT = Gauge("connection_count", "number of active connections", ["service"])


def smtp_client_service(ready_queue: str) -> str:
    """The per-ready-queue service label of KumoMTA's delivery metrics."""
    return f"{SMTP_CLIENT}:{ready_queue}"


class KumoCounter(Collector):
    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: tuple[str, ...],
        *,
        max_series: int | None = None,
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self.name = name
        self._documentation = documentation
        self._labelnames = labelnames
        self._max_series = max_series
        self._values: OrderedDict[tuple[str, ...], float] = OrderedDict()
        self._lock = threading.Lock()
        COUNTER_NAMES.add(name)
        if registry is not None:
            registry.register(self)

    def inc(self, *labelvalues: str, amount: float = 1.0) -> None:
        if len(labelvalues) != len(self._labelnames):
            raise ValueError(f"{self.name} takes labels {self._labelnames}")
        with self._lock:
            self._values[labelvalues] = self._values.get(labelvalues, 0.0) + amount
            self._values.move_to_end(labelvalues)
            if self._max_series is not None:
                while len(self._values) > self._max_series:
                    self._values.popitem(last=False)

    def value(self, *labelvalues: str) -> float:
        with self._lock:
            return self._values.get(labelvalues, 0.0)

    def collect(self) -> Iterator[Metric]:
        metric = Metric(self.name, self._documentation, "unknown")
        with self._lock:
            for labels, value in self._values.items():
                metric.samples.append(
                    Sample(self.name, dict(zip(self._labelnames, labels, strict=True)), value)
                )
        yield metric

    def describe(self) -> Iterator[Metric]:
        yield Metric(self.name, self._documentation, "unknown")
