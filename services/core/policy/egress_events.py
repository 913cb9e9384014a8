"""The egress events' rules shared by both kinds of policy: KumoMTA's built-in
"unspecified" source and pool, what a missing handler means, and the checked result of a
handler that ran (lua_policy.py runs it)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

from ..domain.egress_source import (
    UNSPECIFIED,
    UNSPECIFIED_POOL,
    UNSPECIFIED_SOURCE,
    EgressPool,
    EgressSource,
)
from ..domain.egress_values import EgressConfigError
from .types import PolicyRuntimeError

T = TypeVar("T")


def builtin_source(source_name: str) -> EgressSource | None:
    """KumoMTA's own source for the name "unspecified" (its handler is never asked)."""
    return UNSPECIFIED_SOURCE if source_name == UNSPECIFIED else None


def builtin_pool(pool_name: str) -> EgressPool | None:
    """KumoMTA's own pool for "unspecified" (the pool of a queue that names none)."""
    return UNSPECIFIED_POOL if pool_name == UNSPECIFIED else None


def no_handler(event: str, name: str) -> PolicyRuntimeError:
    kind = "source" if event == "get_egress_source" else "pool"
    return PolicyRuntimeError(
        f"egress {kind} {name!r}: the policy has no {event} handler to define it"
    )


def checked_result(event: str, json_text: str, parse: Callable[[dict[str, object]], T]) -> T:
    """A handler's result (the JSON of a kumo.make_* object) as the domain object."""
    try:
        return parse(json.loads(json_text))
    except (EgressConfigError, ValueError) as err:  # already checked at kumo.make_*
        raise PolicyRuntimeError(f"{event}: {err}") from err
