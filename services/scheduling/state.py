"""The scheduler's state for one `queued` partition: pure, no I/O, clock injected.

For every waiting message it keeps a `SpoolEntry`: where the message's latest `queued` record
is (partition, offset) and the few fields scheduling needs (queue, due time, attempts,
creation time), never the content. Per scheduled queue, waiting messages sit in a heap ordered
by due time; released messages are "in flight" until their outcome arrives or their lease
runs out (then they are released again, with the same attempt number).

The state is a function of the `queued` log plus the in-flight set: a record is applied only
if its offset is newer than what the entry already reflects, so replaying, duplicates and our
own writes read back are harmless; a message's attempts never go back. Outcomes are accepted
once per (message id, attempt).
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import Callable, Iterable, KeysView
from dataclasses import dataclass

from ..core.domain.token_bucket import MessageRate, TokenBucket
from ..core.spool.entry import SpoolEntry
from .config_resolver import QueueConfigUnavailable


@dataclass(slots=True)
class InFlight:
    """Attempt `attempt` was released; no outcome yet (or one is being written)."""

    attempt: int
    lease_expires_at: int
    # An outcome for this attempt was accepted and its writes are under way: further outcomes
    # for the attempt are duplicates, and the lease no longer applies.
    outcome_accepted: bool = False


@dataclass(slots=True)
class QueueCounts:
    waiting: int = 0
    in_flight: int = 0


class _QueueSchedule:
    """Waiting messages of one scheduled queue, by due time."""

    __slots__ = ("heap",)

    def __init__(self) -> None:
        # (due_at, message id); an item is stale when the entry moved on (lazy deletion).
        self.heap: list[tuple[int, str]] = []


# A queue's rate; raises QueueConfigUnavailable for a queue that has no config (held).
RateLookup = Callable[[str], MessageRate | None]


class SchedulerState:
    """Waiting and in-flight messages of a partition (`partition.PartitionScheduler` holds one
    per owned `queued` partition)."""

    def __init__(self, lease_ms: int) -> None:
        if lease_ms < 1:
            raise ValueError(f"lease_ms must be >= 1, got {lease_ms}")
        self.lease_ms = lease_ms
        self._entries: dict[str, SpoolEntry] = {}
        self._queues: dict[str, _QueueSchedule] = {}
        self._in_flight: dict[str, InFlight] = {}
        # (lease_expires_at, message id, attempt); stale items are skipped.
        self._leases: list[tuple[int, str, int]] = []
        # Throttles outlive a queue's heap: a queue that empties and refills keeps its bucket.
        self._buckets: dict[str, TokenBucket] = {}
        self._heap_items = 0
        self.releases = 0
        # Queues without a config (get_queue_config failed): held until then (ms).
        self._held_until: dict[str, int] = {}

    # --- reading the log ---------------------------------------------------------------

    def apply_queued(self, entry: SpoolEntry) -> None:
        """A `QueuedMessage` record: the latest state of its message, if it is newer."""
        current = self._entries.get(entry.id)
        if current is not None and not _is_newer(entry.partition, entry.offset, current):
            return
        if current is not None and entry.attempts < current.attempts:
            # A stale duplicate of an earlier attempt: attempts never go back, or an attempt
            # whose outcome was applied would be released again. The entry points at the newer
            # record (compaction keeps only that one) and keeps its schedule.
            if entry.partition == current.partition:
                current.offset = entry.offset
            return
        entry.queue = sys.intern(entry.queue)
        self._entries[entry.id] = entry
        flight = self._in_flight.get(entry.id)
        was_waiting = current is not None and flight is None
        if flight is not None and entry.attempts > flight.attempt:
            # The outcome of the released attempt was applied (attempts moved past it). A
            # record with fewer attempts (a stale duplicate) leaves the attempt in flight.
            del self._in_flight[entry.id]
            flight = None
        if flight is not None:
            return  # still in flight: it waits again on its outcome or lease expiry
        if (
            not was_waiting
            or current is None
            or current.due_at != entry.due_at
            or current.queue != entry.queue
        ):
            self._push(entry)
        # Otherwise the existing heap item (same due time, same queue) already points at it.

    def apply_tombstone(self, message_id: str, partition: int, offset: int) -> None:
        """A tombstone: the message is done (delivered, bounced, expired) or moved."""
        current = self._entries.get(message_id)
        # A tombstone in another partition is the old copy of a moved (rebound) message being
        # removed after its new record was written: it does not remove the new one.
        if current is None or partition != current.partition or offset <= current.offset:
            return
        del self._entries[message_id]
        self._in_flight.pop(message_id, None)

    def note_attempt(self, message_id: str, attempt: int, released_at: int) -> None:
        """A `DeliveryRequest` seen on `attempts` while rebuilding: in flight until its lease
        runs out, unless the message already moved past that attempt."""
        entry = self._entries.get(message_id)
        if entry is None or entry.attempts != attempt:
            return
        expires = released_at + self.lease_ms
        flight = self._in_flight.get(message_id)
        if flight is not None and flight.lease_expires_at >= expires:
            return
        self._in_flight[message_id] = InFlight(attempt, expires)
        heapq.heappush(self._leases, (expires, message_id, attempt))

    # --- releasing ---------------------------------------------------------------------

    def take_due(self, now_ms: int, max_count: int, rate_of: RateLookup) -> list[SpoolEntry]:
        """Messages to release now, at most `max_count`, honouring each queue's rate.

        Each returned message is in flight for its current attempt from now on; the caller
        must produce its `DeliveryRequest` (or call `release_failed`).
        """
        self.expire_leases(now_ms)
        released: list[SpoolEntry] = []
        for queue, schedule in list(self._queues.items()):
            if len(released) >= max_count:
                break
            if self._held_until.get(queue, 0) > now_ms:
                continue
            try:
                rate = rate_of(queue)
            except QueueConfigUnavailable as held:
                self._held_until[queue] = held.retry_at_ms
                continue
            self._held_until.pop(queue, None)
            bucket = self._bucket(queue, rate, now_ms)
            heap = schedule.heap
            while heap and len(released) < max_count:
                due_at, message_id = heap[0]
                entry = self._entries.get(message_id)
                if not self._is_waiting_item(entry, queue, due_at):
                    heapq.heappop(heap)
                    self._heap_items -= 1
                    continue
                assert entry is not None
                if due_at > now_ms:
                    break
                if bucket is not None and not bucket.try_take(now_ms):
                    break
                heapq.heappop(heap)
                self._heap_items -= 1
                self._mark_in_flight(entry, now_ms)
                released.append(entry)
            if not heap:
                del self._queues[queue]
                self._held_until.pop(queue, None)
        self.releases += len(released)
        self._maybe_compact()
        return released

    def release_failed(self, message_id: str, attempt: int) -> None:
        """The `DeliveryRequest` could not be produced: the message waits again."""
        flight = self._in_flight.get(message_id)
        entry = self._entries.get(message_id)
        if flight is None or flight.attempt != attempt or flight.outcome_accepted:
            return
        del self._in_flight[message_id]
        if entry is not None:
            self._push(entry)

    def expire_leases(self, now_ms: int) -> int:
        """Released attempts whose lease ran out without an outcome wait again (retried)."""
        expired = 0
        while self._leases and self._leases[0][0] <= now_ms:
            _, message_id, attempt = heapq.heappop(self._leases)
            flight = self._in_flight.get(message_id)
            if flight is None or flight.attempt != attempt or flight.lease_expires_at > now_ms:
                continue
            if flight.outcome_accepted:
                continue
            del self._in_flight[message_id]
            entry = self._entries.get(message_id)
            if entry is not None:
                self._push(entry)
                expired += 1
        return expired

    def claim_waiting(self, message_ids: Iterable[str], now_ms: int) -> list[SpoolEntry]:
        """Of `message_ids`, the waiting ones (not in flight), now marked in flight for their
        current attempt (an operator action is under way; `release_failed` undoes it, the lease
        bounds it)."""
        claimed = []
        for message_id in message_ids:
            entry = self._entries.get(message_id)
            if entry is None or message_id in self._in_flight:
                continue
            self._mark_in_flight(entry, now_ms)
            claimed.append(entry)
        return claimed

    def forget(self, message_id: str) -> None:
        """The message left these partitions (bounced or moved to another queue): drop it
        now, before its tombstone is read back, so it cannot be released meanwhile."""
        self._entries.pop(message_id, None)
        self._in_flight.pop(message_id, None)

    # --- outcomes ----------------------------------------------------------------------

    def accept_outcome(self, message_id: str, attempt: int) -> SpoolEntry | None:
        """The entry to apply an outcome of (message id, attempt) to, or None to ignore it.

        Accepted once per attempt: the message must still be at that attempt and no other
        outcome of it may be under way. The entry stays in flight until the write it causes
        (tombstone or updated record) is read back from `queued`.
        """
        entry = self._entries.get(message_id)
        if entry is None or entry.attempts != attempt:
            return None
        flight = self._in_flight.get(message_id)
        if flight is not None and flight.outcome_accepted:
            return None
        # An outcome may arrive for an attempt we did not see released (e.g. the request was
        # older than the lease window at rebuild): it is still the current attempt's outcome.
        self._in_flight[message_id] = InFlight(attempt, lease_expires_at=0, outcome_accepted=True)
        return entry

    def outcome_failed(self, message_id: str, attempt: int) -> None:
        """Writing the outcome's result failed: the outcome may be applied again."""
        flight = self._in_flight.get(message_id)
        if flight is not None and flight.attempt == attempt and flight.outcome_accepted:
            del self._in_flight[message_id]
            entry = self._entries.get(message_id)
            if entry is not None:
                self._push(entry)

    # --- reading the state -------------------------------------------------------------

    def entry(self, message_id: str) -> SpoolEntry | None:
        return self._entries.get(message_id)

    def in_flight(self, message_id: str) -> InFlight | None:
        return self._in_flight.get(message_id)

    @property
    def message_count(self) -> int:
        return len(self._entries)

    @property
    def in_flight_count(self) -> int:
        return len(self._in_flight)

    def due_count(self, now_ms: int) -> int:
        """Waiting messages already due (held back by a throttle or not yet picked up)."""
        return sum(
            1 for e in self._entries.values() if e.due_at <= now_ms and e.id not in self._in_flight
        )

    def next_wakeup(self, now_ms: int) -> int | None:
        """The earliest time something may become releasable (due time, lease, throttle)."""
        candidates: list[int] = []
        if self._leases:
            candidates.append(self._leases[0][0])
        for queue, schedule in self._queues.items():
            if not schedule.heap:
                continue
            due_at = schedule.heap[0][0]
            bucket = self._buckets.get(queue)
            if bucket is not None and due_at <= now_ms:
                due_at = bucket.next_token_at(now_ms)
            candidates.append(max(due_at, self._held_until.get(queue, 0)))
        return min(candidates) if candidates else None

    def queue_names(self) -> list[str]:
        return list({e.queue for e in self._entries.values()})

    def queue_counts(self) -> dict[str, QueueCounts]:
        """Per scheduled queue: messages waiting and in flight (one scan: metrics, admin)."""
        counts: dict[str, QueueCounts] = {}
        for entry in self._entries.values():
            count = counts.get(entry.queue)
            if count is None:
                count = counts[entry.queue] = QueueCounts()
            if entry.id in self._in_flight:
                count.in_flight += 1
            else:
                count.waiting += 1
        return counts

    def message_ids(self) -> KeysView[str]:
        """The ids of the messages held (a live view: do not change the state while using it)."""
        return self._entries.keys()

    def entries(self) -> list[SpoolEntry]:
        """Every message held (waiting or in flight); a copy of the list, not of the entries."""
        return list(self._entries.values())

    def entries_of(self, queue: str) -> list[SpoolEntry]:
        """The messages of one scheduled queue, by due time (scans every entry: inspection)."""
        return sorted(
            (e for e in self._entries.values() if e.queue == queue), key=lambda e: e.due_at
        )

    # --- internals ---------------------------------------------------------------------

    def _bucket(self, queue: str, rate: MessageRate | None, now_ms: int) -> TokenBucket | None:
        if rate is None:
            self._buckets.pop(queue, None)
            return None
        bucket = self._buckets.get(queue)
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[queue] = TokenBucket(rate, now_ms)
        return bucket

    def _is_waiting_item(self, entry: SpoolEntry | None, queue: str, due_at: int) -> bool:
        return (
            entry is not None
            and entry.due_at == due_at
            and entry.queue == queue
            and entry.id not in self._in_flight
        )

    def _push(self, entry: SpoolEntry) -> None:
        schedule = self._queues.get(entry.queue)
        if schedule is None:
            schedule = self._queues[entry.queue] = _QueueSchedule()
        heapq.heappush(schedule.heap, (entry.due_at, entry.id))
        self._heap_items += 1

    def _mark_in_flight(self, entry: SpoolEntry, now_ms: int) -> None:
        expires = now_ms + self.lease_ms
        self._in_flight[entry.id] = InFlight(entry.attempts, expires)
        heapq.heappush(self._leases, (expires, entry.id, entry.attempts))

    def _maybe_compact(self) -> None:
        # Stale heap items (moved or removed messages) are dropped lazily; rebuild the heaps
        # when they outnumber live ones so memory stays proportional to waiting messages.
        if self._heap_items > 2 * len(self._entries) + 1024:
            self._compact()

    def _compact(self) -> None:
        self._queues = {}
        self._heap_items = 0
        by_queue: dict[str, list[tuple[int, str]]] = {}
        for entry in self._entries.values():
            if entry.id not in self._in_flight:
                by_queue.setdefault(entry.queue, []).append((entry.due_at, entry.id))
        for queue, items in by_queue.items():
            heapq.heapify(items)
            schedule = _QueueSchedule()
            schedule.heap = items
            self._queues[queue] = schedule
            self._heap_items += len(items)

    def load_bulk(self, entries: dict[str, SpoolEntry]) -> None:
        """Replace the state with a rebuilt index (last record per id already resolved)."""
        self._entries = entries
        self._in_flight = {}
        self._leases = []
        self._compact()


def _is_newer(partition: int, offset: int, current: SpoolEntry) -> bool:
    # Offsets order records within a partition; a record from another partition (the
    # message moved queue) is taken as newer: moves are rare and written after the original.
    return partition != current.partition or offset > current.offset
