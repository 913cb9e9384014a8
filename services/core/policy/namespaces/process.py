"""kumo.available_parallelism: the CPUs this process may use (its affinity mask), or
KUMO_AVAILABLE_PARALLELISM when set, as in KumoMTA."""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..host import HostCallback, HostContext

OVERRIDE_VARIABLE = "KUMO_AVAILABLE_PARALLELISM"


def available_parallelism() -> int:
    override = os.environ.get(OVERRIDE_VARIABLE, "").strip()
    if override.isdigit() and int(override) > 0:
        return int(override)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def host_callbacks(context: HostContext) -> Mapping[str, HostCallback]:
    return {"process_available_parallelism": available_parallelism}
