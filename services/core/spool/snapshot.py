"""The spool of some `queued` partitions as of one moment: the scheduler's rebuild on
assignment, and what `relaystream queues` lists.

`read_spool` reads the partitions from the beginning up to the end offsets seen when the read
starts; the last record per key (the message id) wins, tombstones remove, a record that does
not decode or validate removes its key's message and is returned for the dead-letter topic.
Only the compact index is kept (see `index`), never content. Read with the replay's batch
fetcher (`core.kafka.replay`: committed records only, CRCs checked, the next fetch under way
while a batch is indexed), not a consumer: the consumer's Python object per record cost a sixth
of a rebuild.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..kafka.dead_letter import PoisonRecord, RecordRejected
from ..kafka.partition_reader import YIELD_EVERY_RECORDS
from ..kafka.replay import RawRecord, ReplayProgress, replay_topic_batches
from .entry import SpoolEntry
from .index import SpoolIndexDecoder, key_text

log = logging.getLogger(__name__)

# Fetches records by (partition, offset): `SpoolReader.fetch`.
RecordFetcher = Callable[[Iterable[tuple[int, int]]], Awaitable[dict[tuple[int, int], Any]]]


@dataclass
class SpoolSnapshot:
    """The rebuilt index and the offsets it is complete up to (exclusive), per partition."""

    entries: dict[str, SpoolEntry]
    end_offsets: dict[int, int]
    records_read: int
    # Records that do not decode or validate and are still the latest of their key (for the
    # caller to dead-letter); a later record or tombstone of the key supersedes one.
    poison: list[tuple[PoisonRecord, RecordRejected]]
    seconds: float
    # Messages live in more than one partition: a move (rebind) interrupted between writing
    # the new record and tombstoning the old one. `entries` holds one copy provisionally;
    # `resolve_moves` keeps the newest.
    conflicts: dict[str, list[SpoolEntry]] = field(default_factory=dict)


async def read_spool(
    bootstrap: str, topic: str, partitions: Iterable[int], *, client_id: str
) -> SpoolSnapshot:
    """The index of every message waiting in `topic`'s `partitions` (see the module doc)."""
    started = time.monotonic()
    numbers = sorted(partitions)
    if not numbers:
        return SpoolSnapshot({}, {}, 0, [], 0.0)
    decoder = SpoolIndexDecoder()
    # Per partition: a tombstone removes only its own partition's copy (a moved message's
    # old copy is tombstoned after its new record was written elsewhere).
    by_partition: dict[int, dict[str, SpoolEntry]] = {p: {} for p in numbers}
    # Per partition, by key (by offset for a keyless one): the latest record of the key if it
    # is poison. Dead-lettered only once the read is complete, so a poison record superseded
    # since (e.g. by the tombstone `dead-letters drop` writes) is not raised again.
    poison: dict[int, dict[bytes | int, tuple[PoisonRecord, RecordRejected]]] = {
        p: {} for p in numbers
    }

    def apply(partition: int, record: RawRecord) -> None:
        entries = by_partition[partition]
        pending = poison[partition]
        key, value = record.key, record.value
        if key is not None and pending:
            pending.pop(key, None)
        if value is None:
            if key is not None:
                entries.pop(key_text(key), None)
            return
        try:
            entry = decoder.index_entry(partition, record.offset, key, value)
        except RecordRejected as rejected:
            # The latest record of the key is what compaction keeps: this one replaces the
            # key's message, which now lives in the dead letter until re-injected.
            if key is not None:
                entries.pop(key_text(key), None)
            where = key if key is not None else record.offset
            pending[where] = (PoisonRecord(topic, partition, record.offset, key, value), rejected)
            return
        entries[entry.id] = entry

    progress = ReplayProgress()
    async for batch in replay_topic_batches(
        bootstrap,
        topic,
        partitions=numbers,
        progress=progress,
        client_id=client_id,
        check_crcs=True,
    ):
        records = batch.records
        # Yield to the event loop between slices: a service rebuilding some partitions in the
        # background keeps serving the others meanwhile.
        for first in range(0, len(records), YIELD_EVERY_RECORDS):
            for record in records[first : first + YIELD_EVERY_RECORDS]:
                apply(batch.partition, record)
            await asyncio.sleep(0)
    read = progress.read
    entries, conflicts = _merge(by_partition)
    seconds = time.monotonic() - started
    log.info(
        "spool rebuilt",
        extra={"messages": len(entries), "records": read, "seconds": round(seconds, 3)},
    )
    return SpoolSnapshot(
        entries,
        {p: progress.end_offsets.get(p, 0) for p in numbers},
        read,
        [found for pending in poison.values() for found in pending.values()],
        seconds,
        conflicts,
    )


def _merge(
    by_partition: dict[int, dict[str, SpoolEntry]],
) -> tuple[dict[str, SpoolEntry], dict[str, list[SpoolEntry]]]:
    """One index of every partition's live messages, and the ids live in several."""
    entries: dict[str, SpoolEntry] = {}
    conflicts: dict[str, list[SpoolEntry]] = {}
    for partition in sorted(by_partition):
        # Popped as merged, so at most one partition's dict exists twice in memory.
        for message_id, entry in by_partition.pop(partition).items():
            other = entries.get(message_id)
            if other is None:
                entries[message_id] = entry
            else:
                conflicts.setdefault(message_id, [other]).append(entry)
    return entries, conflicts


async def resolve_moves(snapshot: SpoolSnapshot, records: RecordFetcher) -> list[SpoolEntry]:
    """Keeps the newest copy (by record timestamp) of each message live in several partitions
    and returns the stale copies (to tombstone: finishing the interrupted move)."""
    if not snapshot.conflicts:
        return []
    newest, stale = await newest_copies(snapshot.conflicts, records)
    snapshot.entries.update(newest)
    snapshot.conflicts = {}
    return stale


async def newest_copies(
    copies: dict[str, list[SpoolEntry]], records: RecordFetcher
) -> tuple[dict[str, SpoolEntry], list[SpoolEntry]]:
    """Of each message's copies (live in several partitions), the newest by record timestamp
    (then offset), and the stale ones."""
    fetched = await records((e.partition, e.offset) for entries in copies.values() for e in entries)

    def stamp(entry: SpoolEntry) -> tuple[int, int]:
        record = fetched.get((entry.partition, entry.offset))
        return (record.timestamp if record is not None else -1, entry.offset)

    newest: dict[str, SpoolEntry] = {}
    stale: list[SpoolEntry] = []
    for message_id, entries in copies.items():
        ordered = sorted(entries, key=stamp)
        newest[message_id] = ordered[-1]
        stale.extend(ordered[:-1])
    return newest, stale
