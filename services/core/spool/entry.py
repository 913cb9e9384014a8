"""A message waiting in the spool (the compacted `queued` topic), by reference only."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class SpoolEntry:
    """A waiting message, by reference: its latest record is `queued[partition]@offset`."""

    id: str
    queue: str
    due_at: int
    attempts: int
    created_at: int
    partition: int
    offset: int
