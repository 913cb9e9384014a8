"""The Python side of what relaystream's policy-extras modules may use (extras_host.lua)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from ...domain.queue_config import (
    QueueConfig,
    QueueConfigError,
    is_kumomta_tuning_field,
    is_queue_config_field,
    merge_overrides,
)
from ..host import HostCallback, HostContext, HostError, policy_log


def queue_config_field(name: str, json_value: str) -> str:
    """How a key of a queue data file (policy-extras.queue) reads: a queue config field whose
    value is good, a KumoMTA tuning field, or not a queue config field at all."""
    if is_kumomta_tuning_field(name):
        return "tuning"
    if not is_queue_config_field(name):
        return "unknown"
    try:
        merge_overrides(QueueConfig(), {name: json.loads(json_value)})
    except QueueConfigError as err:
        raise HostError(str(err)) from err
    return "field"


def host_callbacks(context: HostContext) -> Mapping[str, HostCallback]:
    warned: set[str] = set()

    def warn(text: str) -> None:
        if text not in warned:
            warned.add(text)
            policy_log.warning("%s", text)

    return {"extras_warn": warn, "extras_queue_config_field": queue_config_field}
