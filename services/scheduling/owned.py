"""The `queued` partitions an instance serves: one `PartitionScheduler` each, kept by number.

Partitions are installed when built and dropped when revoked, each on its own. Across them this
is what operator actions and the admin API see of the held messages (`ports.MessageIndex`):
a message lives in the partition of its queue, so a call about an entry goes to the entry's
partition, and a lookup by id asks each partition (an instance owns a handful).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..core.spool.entry import SpoolEntry
from ..core.spool.snapshot import RecordFetcher, newest_copies
from .partition import PartitionScheduler
from .state import InFlight, QueueCounts, RateLookup


class OwnedPartitions:
    def __init__(self, partitions: Iterable[PartitionScheduler] = ()) -> None:
        self._by_number: dict[int, PartitionScheduler] = {p.partition: p for p in partitions}

    # --- the partitions ----------------------------------------------------------------

    def __contains__(self, partition: int) -> bool:
        return partition in self._by_number

    def __iter__(self) -> Iterator[PartitionScheduler]:
        return iter(list(self._by_number.values()))

    def get(self, partition: int) -> PartitionScheduler | None:
        return self._by_number.get(partition)

    def numbers(self) -> set[int]:
        return set(self._by_number)

    def scope(self, partitions: Iterable[int]) -> OwnedPartitions:
        """A view of some of these partitions (the same objects)."""
        return OwnedPartitions(p for n, p in self._by_number.items() if n in set(partitions))

    async def install(self, built: PartitionScheduler, records: RecordFetcher) -> list[SpoolEntry]:
        """Serves `built` from now on; returns the stale copies of messages it shares with the
        partitions already served (a move by rebind interrupted before the old copy's
        tombstone: to tombstone now). The newest copy (by record timestamp) stays."""
        copies: dict[str, list[SpoolEntry]] = {}
        for other in self._by_number.values():
            if other.partition == built.partition:
                continue
            small, large = sorted((built.state, other.state), key=lambda s: s.message_count)
            large_ids = large.message_ids()
            for message_id in [m for m in small.message_ids() if m in large_ids]:
                mine, theirs = built.state.entry(message_id), other.state.entry(message_id)
                assert mine is not None and theirs is not None
                copies.setdefault(message_id, [mine]).append(theirs)
        self._by_number[built.partition] = built
        if not copies:
            return []
        _, stale = await newest_copies(copies, records)
        for entry in stale:
            self.forget(entry)
        return stale

    def drop(self, partition: int) -> PartitionScheduler | None:
        return self._by_number.pop(partition, None)

    # --- the held messages (ports.MessageIndex) ------------------------------------------

    def entry(self, message_id: str) -> SpoolEntry | None:
        for partition in self._by_number.values():
            entry = partition.state.entry(message_id)
            if entry is not None:
                return entry
        return None

    def in_flight(self, message_id: str) -> InFlight | None:
        for partition in self._by_number.values():
            flight = partition.state.in_flight(message_id)
            if flight is not None:
                return flight
        return None

    def entries(self) -> list[SpoolEntry]:
        return [e for p in self._by_number.values() for e in p.state.entries()]

    def entries_of(self, queue: str) -> list[SpoolEntry]:
        found = [e for p in self._by_number.values() for e in p.state.entries_of(queue)]
        return sorted(found, key=lambda e: e.due_at)

    def queue_names(self) -> list[str]:
        return [q for p in self._by_number.values() for q in p.state.queue_names()]

    def queue_counts(self) -> dict[str, QueueCounts]:
        # A queue lives in one partition (its queue name picks it), so no sums are needed;
        # during a rebind's move a message may sit in two, and counts there are approximate.
        merged: dict[str, QueueCounts] = {}
        for partition in self._by_number.values():
            for queue, count in partition.state.queue_counts().items():
                held = merged.setdefault(queue, QueueCounts())
                held.waiting += count.waiting
                held.in_flight += count.in_flight
        return merged

    def claim_waiting(self, message_ids: Iterable[str], now_ms: int) -> list[SpoolEntry]:
        wanted = list(message_ids)
        return [e for p in self._by_number.values() for e in p.state.claim_waiting(wanted, now_ms)]

    def release_failed(self, entry: SpoolEntry) -> None:
        partition = self._by_number.get(entry.partition)
        if partition is not None:
            partition.state.release_failed(entry.id, entry.attempts)

    def forget(self, entry: SpoolEntry) -> None:
        partition = self._by_number.get(entry.partition)
        if partition is not None:
            partition.state.forget(entry.id)

    @property
    def message_count(self) -> int:
        return sum(p.state.message_count for p in self._by_number.values())

    @property
    def in_flight_count(self) -> int:
        return sum(p.state.in_flight_count for p in self._by_number.values())

    # --- releasing ---------------------------------------------------------------------

    def take_due(self, now_ms: int, max_count: int, rate_of: RateLookup) -> list[SpoolEntry]:
        """Due messages of every partition, at most `max_count` (see `SchedulerState`)."""
        due: list[SpoolEntry] = []
        for partition in self._by_number.values():
            if len(due) >= max_count:
                break
            due.extend(partition.state.take_due(now_ms, max_count - len(due), rate_of))
        return due

    def next_wakeup(self, now_ms: int) -> int | None:
        wakeups = [p.state.next_wakeup(now_ms) for p in self._by_number.values()]
        return min((w for w in wakeups if w is not None), default=None)

    def due_count(self, now_ms: int) -> int:
        return sum(p.state.due_count(now_ms) for p in self._by_number.values())
