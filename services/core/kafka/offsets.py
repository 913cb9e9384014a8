"""Which offset is safe to commit when records finish out of order.

A consumer hands records of one partition to several workers at once, so record 7 may finish
before record 5. Committing 8 then would lose 5 if the process died: Kafka would resume after
it. The safe commit is the lowest offset still in flight (everything below it has finished), or
one past the last started offset when nothing is in flight. Offsets may have gaps (compaction,
transaction markers): a gap was never handed out, so it never blocks a commit.

Pure bookkeeping, no I/O: the consumer calls `started` when it hands a record out, `finished`
when the handler is done (or the record was dead-lettered), and commits `committable()`.
"""

from __future__ import annotations

from collections import deque


class PartitionOffsets:
    """Started and finished offsets of one partition during one assignment of it."""

    def __init__(self) -> None:
        # Started offsets in the order handed out, which is increasing offset order. Finished
        # ones leave `_in_flight` at once and the front of `_started` lazily, so `committable`
        # is amortised O(1).
        self._started: deque[int] = deque()
        self._in_flight: set[int] = set()
        self._last_started: int | None = None
        self._committed: int | None = None

    def started(self, offset: int) -> None:
        """Record that `offset` was handed to a worker; offsets must increase."""
        if self._last_started is not None and offset <= self._last_started:
            raise ValueError(
                f"offset {offset} started after {self._last_started}: offsets must increase"
            )
        self._started.append(offset)
        self._in_flight.add(offset)
        self._last_started = offset

    def finished(self, offset: int) -> None:
        """Record that the worker is done with `offset` (processed or dead-lettered)."""
        if offset not in self._in_flight:
            raise ValueError(f"offset {offset} finished but was not in flight")
        self._in_flight.remove(offset)

    @property
    def in_flight(self) -> int:
        """How many started offsets have not finished yet."""
        return len(self._in_flight)

    def committable(self) -> int | None:
        """The offset to commit (the next one to read), or None before anything started."""
        while self._started and self._started[0] not in self._in_flight:
            self._started.popleft()
        if self._started:
            return self._started[0]
        if self._last_started is None:
            return None
        return self._last_started + 1

    def pending_commit(self) -> int | None:
        """`committable()` when it moved past the last committed offset, else None."""
        offset = self.committable()
        if offset is None or (self._committed is not None and offset <= self._committed):
            return None
        return offset

    def committed(self, offset: int) -> None:
        """Record that `offset` was committed to Kafka."""
        if self._committed is None or offset > self._committed:
            self._committed = offset
