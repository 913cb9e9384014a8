"""The process's Prometheus registry as KumoMTA's `/metrics.json` document.

Each metric is `{"help", "type", "value"}`; `value` is a number for an unlabelled metric,
else nested objects by label name then label value, in the metric's label order
(`{"queue": {"example.com": 3.0}}`). Histograms and summaries give their `_count` and `_sum`.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry

from .kumo_metrics import COUNTER_NAMES

_SERIES_OF_TYPE = {"histogram": ("_count", "_sum"), "summary": ("_count", "_sum")}


def _place(tree: dict[str, Any], labels: list[tuple[str, str]], value: float) -> None:
    node = tree
    for index, (name, label_value) in enumerate(labels):
        by_value = node.setdefault(name, {})
        if index == len(labels) - 1:
            by_value[label_value] = value
        else:
            node = by_value.setdefault(label_value, {})


def metrics_json(registry: CollectorRegistry = REGISTRY) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for family in registry.collect():
        suffixes = _SERIES_OF_TYPE.get(family.type)
        wanted = {family.name + s: s for s in suffixes} if suffixes else None
        for sample in family.samples:
            if wanted is not None:
                if sample.name not in wanted:
                    continue
                name = sample.name
            elif family.type == "counter":
                if not sample.name.endswith("_total"):
                    continue  # the _created series
                name = sample.name
            else:
                name = family.name
            kind = "counter" if family.name in COUNTER_NAMES else family.type
            entry = document.setdefault(
                name, {"help": family.documentation, "type": kind, "value": None}
            )
            labels = list(sample.labels.items())
            if not labels:
                entry["value"] = sample.value
            else:
                if entry["value"] is None:
                    entry["value"] = {}
                _place(entry["value"], labels, sample.value)
    return document
