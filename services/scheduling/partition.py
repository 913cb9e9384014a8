"""One `queued` partition's scheduling: built from the spool, served, dropped on its own.

A `PartitionScheduler` holds everything the service knows of one owned `queued` partition:
its messages' index, due heaps, throttles and in-flight leases (`SchedulerState`), how far it
has read `queued` (the next offset to index: the group consumer is seeked there whenever the
partition is (re)assigned, since `queued` is never committed), and the offset up to which the
co-partitioned `outcomes` partition has been applied but not committed yet. The service keeps
one per owned partition (`owned.OwnedPartitions`); `build.build_partition` makes one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.kafka.dead_letter import RecordRejected
from ..core.spool.entry import SpoolEntry
from ..core.spool.index import SpoolIndexDecoder, key_text
from .state import SchedulerState


@dataclass(frozen=True)
class Indexed:
    """What indexing one `queued` record did: the entry it added (None for a tombstone or a
    rejected record) and the rejection to dead-letter, if any."""

    entry: SpoolEntry | None = None
    rejected: RecordRejected | None = None


class PartitionScheduler:
    """The scheduling state of one `queued` partition; see the module doc."""

    def __init__(
        self, partition: int, state: SchedulerState, next_offset: int, *, build_seconds: float
    ) -> None:
        self.partition = partition
        self.state = state
        # The offset of the next `queued` record to index.
        self.next_offset = next_offset
        self.build_seconds = build_seconds
        # `outcomes` of this partition applied up to here (exclusive), not committed yet.
        self._outcomes_applied: int | None = None

    def index(self, record: Any, decoder: SpoolIndexDecoder) -> Indexed:
        """Applies one `queued` record of this partition read by the group consumer."""
        self.next_offset = max(self.next_offset, record.offset + 1)
        if record.value is None:
            if record.key is not None:
                self.state.apply_tombstone(key_text(record.key), record.partition, record.offset)
            return Indexed()
        try:
            entry = decoder.index_entry(record.partition, record.offset, record.key, record.value)
        except RecordRejected as rejected:
            # As in the rebuild: the latest record of the key replaces the key's message.
            if record.key is not None:
                self.state.apply_tombstone(key_text(record.key), record.partition, record.offset)
            return Indexed(rejected=rejected)
        self.state.apply_queued(entry)
        return Indexed(entry=entry)

    def outcomes_applied(self, next_offset: int) -> None:
        """The outcomes below `next_offset` are applied (their writes acknowledged)."""
        current = self._outcomes_applied
        self._outcomes_applied = next_offset if current is None else max(current, next_offset)

    def take_outcomes_to_commit(self) -> int | None:
        """The outcomes offset to commit, if any applied since the last call."""
        offset, self._outcomes_applied = self._outcomes_applied, None
        return offset
