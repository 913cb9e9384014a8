"""Rebuilding the scheduler's state from Kafka when partitions are assigned.

1. `core.spool.snapshot.read_spool`: the owned `queued` partitions, as an index (no content).
2. `read_recent_attempts`: the owned `attempts` partitions from `now - lease` (by timestamp) to
   their end: a request whose attempt is still the message's current one is in flight until its
   lease runs out (a restart must not release it again meanwhile).

Both use a dedicated consumer with manual assignment (no group, nothing committed) and large
fetches. Outcomes are not read here: the group consumer resumes `outcomes` from its committed
offsets after the rebuild, and applying an outcome is idempotent per (message id, attempt).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..core.events.codec import DecodeError, decode
from ..core.kafka.partition_reader import read_since


@dataclass(frozen=True)
class RecentAttempt:
    message_id: str
    attempt: int
    released_at: int


async def read_recent_attempts(
    bootstrap: str,
    topic: str,
    partitions: Iterable[int],
    *,
    since_ms: int,
    client_id: str,
) -> list[RecentAttempt]:
    """DeliveryRequests in `topic`'s `partitions` with a timestamp at or after `since_ms`."""
    found: list[RecentAttempt] = []

    def apply(record: Any) -> None:
        if record.value is None:
            return
        try:
            _, request = decode(record.value, "DeliveryRequest")
        except DecodeError:
            return
        released_at = int(request["released_at"].timestamp() * 1000)
        found.append(RecentAttempt(request["id"], request["attempt"], released_at))

    await read_since(
        bootstrap, topic, partitions, since_ms=since_ms, on_record=apply, client_id=client_id
    )
    return found
