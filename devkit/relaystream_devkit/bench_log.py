"""What a bench run wrote to its broker's log directory: per topic, bytes, batches, records and
transaction markers.

The bench's own broker keeps its partitions in one local directory (`<topic>-<partition>/`, one
`.log` file per segment). `BrokerLogWatch` remembers where each segment's last whole record
batch ended and, asked again, walks the batches appended since: only their headers (Kafka's
record batch v2, the bytes the producer sent, compressed as it compressed them). A transaction
marker is a control batch of one record: it takes an offset, so it is part of the end offsets'
growth, but no consumer sees it. The internal topics count too (`__consumer_offsets`: offset
commits and their markers; `__transaction_state`: the coordinator's records of each transaction).
Segments only grow during a bench (no topic rolls or compacts within minutes), so the sizes
appended are the bytes the run wrote, before replication.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

# Kafka's topics that a pipeline writes to (its metadata log is left out: it grows on a timer).
INTERNAL_TOPICS = ("__consumer_offsets", "__transaction_state")
# Record batch v2 header offsets (Kafka's DefaultRecordBatch).
_LENGTH_AT, _LENGTH_END = 8, 12
_ATTRIBUTES_AT, _ATTRIBUTES_END = 21, 23
_COUNT_AT, _HEADER_END = 57, 61
_COMPRESSION_MASK = 0x07
_TRANSACTIONAL = 0x10
_CONTROL = 0x20


@dataclass(frozen=True)
class TopicGrowth:
    """What one topic (all its partitions) gained in a run."""

    topic: str
    bytes: int
    batches: int
    records: int
    markers: int
    transactional_batches: int
    compressed_batches: int


@dataclass
class _Counts:
    bytes: int = 0
    batches: int = 0
    records: int = 0
    markers: int = 0
    transactional_batches: int = 0
    compressed_batches: int = 0


def _topic_of(partition_dir: str) -> str:
    return partition_dir.rpartition("-")[0]


class BrokerLogWatch:
    """Counts what the broker appended under `data_dir` since the last `advance()`."""

    def __init__(self, data_dir: Path, prefix: str) -> None:
        self._data_dir = data_dir
        self._prefix = prefix
        self._ends: dict[Path, int] = {}

    def _segments(self) -> list[Path]:
        return sorted(
            path
            for path in self._data_dir.glob("*-*/*.log")
            if _topic_of(path.parent.name).startswith(self._prefix)
            or _topic_of(path.parent.name) in INTERNAL_TOPICS
        )

    def advance(self) -> list[TopicGrowth]:
        """Per topic (the bench's, without its prefix, and Kafka's internal ones), what was
        appended since the previous call; topics that gained nothing are left out."""
        counts: dict[str, _Counts] = defaultdict(_Counts)
        for segment in self._segments():
            start = self._ends.get(segment, 0)
            with segment.open("rb") as file:
                file.seek(start)
                data = file.read()
            position = 0
            topic = _topic_of(segment.parent.name).removeprefix(self._prefix)
            while position + _HEADER_END <= len(data):
                end = (
                    position
                    + _LENGTH_END
                    + int.from_bytes(data[position + _LENGTH_AT : position + _LENGTH_END], "big")
                )
                if end > len(data):
                    break  # being written: counted next time
                attributes = int.from_bytes(
                    data[position + _ATTRIBUTES_AT : position + _ATTRIBUTES_END], "big"
                )
                found = counts[topic]
                found.bytes += end - position
                found.batches += 1
                if attributes & _CONTROL:
                    found.markers += 1
                else:
                    found.records += int.from_bytes(
                        data[position + _COUNT_AT : position + _HEADER_END], "big"
                    )
                    found.transactional_batches += bool(attributes & _TRANSACTIONAL)
                    found.compressed_batches += bool(attributes & _COMPRESSION_MASK)
                position = end
            self._ends[segment] = start + position
        return [TopicGrowth(topic, **vars(found)) for topic, found in sorted(counts.items())]

    def settled(self, quiet_s: float = 2.5, limit_s: float = 30.0) -> list[TopicGrowth]:
        """`advance()` once nothing was appended for `quiet_s` (at most `limit_s`): the
        records that follow a delivery (outcome, spool tombstone, commits) belong to its run."""
        deadline = time.monotonic() + limit_s
        last = self._sizes()
        quiet_since = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - quiet_since < quiet_s:
            time.sleep(0.5)
            sizes = self._sizes()
            if sizes != last:
                last, quiet_since = sizes, time.monotonic()
        return self.advance()

    def _sizes(self) -> dict[Path, int]:
        return {segment: segment.stat().st_size for segment in self._segments()}
