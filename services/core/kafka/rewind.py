"""Giving back records a consumer fetched but will not process.

Fetching moves a consumer's in-memory position. A loop that drops a fetched batch (because
the partitions were reassigned while it was fetched, so the batch may mix records of the old
and the new assignment) must move the position back, or the next batch starts after records
nobody processed and the next commit skips them for good. Rewinding to the committed offset
is exactly where a fresh assignment starts, so nothing is skipped and nothing committed is
processed twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError

from . import metrics


async def rewind_to_committed(
    consumer: Any, partitions: Iterable[TopicPartition], *, group: str
) -> None:
    """Seek each of `partitions` still assigned to `consumer` back to its committed offset,
    or to its beginning when the group has committed none (the consumers here reset to
    `earliest`). Partitions no longer assigned are left alone: their next owner starts from
    the committed offset anyway."""
    metrics.REWOUND_BATCHES.labels(group).inc()
    for tp in set(partitions) & set(consumer.assignment()):
        committed = await consumer.committed(tp)
        try:
            if committed is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
        except IllegalStateError:
            continue  # revoked while we asked: its position went with its assignment
