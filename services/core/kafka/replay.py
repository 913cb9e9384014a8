"""Reading a whole topic outside any consumer group: audits, `relaystream logs`, broadcasts.

`replay_topic` reads every partition of a topic, starts at the beginning (or at the first
offset at or after `since`, via offsets_for_times), and stops at the end offsets it saw when it
started, unless `follow` is set, in which case it keeps reading new records until cancelled.
Records come in per-partition order; partitions are interleaved as Kafka returns them.

`replay_topic_batches` is the same a fetched record batch at a time, for readers of millions of
records: it sends Fetch requests itself and hands out the records of aiokafka's compiled record
batches as they are (objects with offset, timestamp, key and value). aiokafka's consumer wraps
each record in a Python ConsumerRecord through a generator, which costs more than the whole
rest of an audit; the consumer is still used for the offset look-ups.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka import errors as kafka_errors
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.control_record import ABORT_MARKER, ControlRecord
from aiokafka.record.memory_records import MemoryRecords

from .admin import describe_topics

# Big fetches: a replay is throughput-bound, and every round trip costs a poll.
PARTITION_FETCH_BYTES = 16 * 1024 * 1024
FETCH_BYTES = 64 * 1024 * 1024
FETCH_MAX_WAIT_MS = 500
# Only committed records: routing and ingest write in Kafka transactions, and an aborted
# transaction's records (a crashed batch, re-done after restart) must never be replayed.
READ_COMMITTED = 1

# Fetch errors that a metadata refresh and a retry cure (a leader moved, a broker restarted).
_RETRIABLE = (
    kafka_errors.NotLeaderForPartitionError,
    kafka_errors.UnknownTopicOrPartitionError,
    kafka_errors.LeaderNotAvailableError,
    kafka_errors.KafkaTimeoutError,
    kafka_errors.RequestTimedOutError,
    kafka_errors.KafkaConnectionError,
    kafka_errors.NodeNotReadyError,
)


@dataclass(frozen=True)
class ReplayedRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None


class RawRecord(Protocol):
    """One record of a fetched batch (aiokafka's compiled record type)."""

    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True)
class ReplayedBatch:
    """Consecutive records of one partition, in offset order (compaction may leave gaps)."""

    topic: str
    partition: int
    records: Sequence[RawRecord]


@dataclass
class ReplayProgress:
    """How far a replay is: records read of the records that stood below the end offsets."""

    total: int = 0
    read: int = 0
    # Per partition, the end offset the replay stops at (set when it starts; not with follow).
    end_offsets: dict[int, int] = field(default_factory=dict)


# (fetched data, start, end) of one uncompressed record batch's bytes -> False only when no
# record in them can be wanted: a replay then skips the batch without making its records.
BatchTest = Callable[[bytes, int, int], bool]

# Record batch v2 header (Kafka's DefaultRecordBatch): the batch length follows the 8-byte base
# offset and counts the bytes after itself; the record count is the header's last field.
_LENGTH_AT, _LENGTH_END = 8, 12
_COUNT_AT, _HEADER_END = 57, 61
_V2 = 2


async def _start_offsets(
    consumer: Any, partitions: list[TopicPartition], since: datetime | None
) -> dict[TopicPartition, int]:
    beginnings: dict[TopicPartition, int] = await consumer.beginning_offsets(partitions)
    if since is None:
        return beginnings
    found = await consumer.offsets_for_times(
        {tp: int(since.timestamp() * 1000) for tp in partitions}
    )
    ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
    return {tp: (found[tp].offset if found.get(tp) is not None else ends[tp]) for tp in partitions}


async def _stop_offsets(
    consumer: Any, ends: dict[TopicPartition, int], stop_at: datetime
) -> dict[TopicPartition, int]:
    found = await consumer.offsets_for_times({tp: int(stop_at.timestamp() * 1000) for tp in ends})
    return {
        tp: end if found.get(tp) is None else min(end, found[tp].offset) for tp, end in ends.items()
    }


async def replay_topic(
    bootstrap: str,
    topic: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    follow: bool = False,
    progress: ReplayProgress | None = None,
    client_id: str = "relaystream-replay",
) -> AsyncIterator[ReplayedRecord]:
    """Yield the records of `topic` from `since` (or the beginning) to the end offsets seen at
    the start (or forever with `follow`); records stamped after `until` are skipped."""
    async for batch in replay_topic_batches(
        bootstrap,
        topic,
        since=since,
        until=until,
        follow=follow,
        progress=progress,
        client_id=client_id,
    ):
        for record in batch.records:
            yield ReplayedRecord(
                batch.topic,
                batch.partition,
                record.offset,
                record.timestamp,
                record.key,
                record.value,
            )


class _PartitionFetcher:
    """Fetch requests to partition leaders, grouped per broker, retried on leader moves."""

    def __init__(self, consumer: Any, topic: str) -> None:
        self._client = consumer._client  # the consumer's connections and metadata
        self._topic = topic

    async def fetch(self, positions: dict[int, int]) -> list[Fetched]:
        """(partition, record set bytes, aborted transactions) for each partition that answered
        without error."""
        by_leader: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
        stale_metadata = False
        for partition, position in positions.items():
            leader = self._client.cluster.leader_for_partition(
                TopicPartition(self._topic, partition)
            )
            if leader is None or leader == -1:
                stale_metadata = True
                continue
            by_leader[leader].append((partition, position, PARTITION_FETCH_BYTES))
        answers = await asyncio.gather(
            *(self._fetch_from(node, parts) for node, parts in by_leader.items()),
            return_exceptions=True,
        )
        fetched: list[Fetched] = []
        for answer in answers:
            if isinstance(answer, _RETRIABLE):
                stale_metadata = True
            elif isinstance(answer, BaseException):
                raise answer
            else:
                stale = answer[1]
                stale_metadata = stale_metadata or stale
                fetched.extend(answer[0])
        if stale_metadata:
            await self._client.force_metadata_update()
            await asyncio.sleep(0.1)
        return fetched

    async def _fetch_from(
        self, node: int, parts: list[tuple[int, int, int]]
    ) -> tuple[list[Fetched], bool]:
        request = FetchRequest(
            FETCH_MAX_WAIT_MS, 1, FETCH_BYTES, READ_COMMITTED, [(self._topic, parts)]
        )
        response = await self._client.send(node, request)
        fetched: list[Fetched] = []
        stale = False
        for _, partitions in response.topics:
            for partition, error_code, _highwater, *part_data in partitions:
                error = kafka_errors.for_code(error_code)
                if error is kafka_errors.NoError:
                    # aborted_transactions: part_data[2] from v11 on (a preferred read replica
                    # follows it), part_data[-2] for v4 to v10.
                    aborted = part_data[2] if response.API_VERSION >= 11 else part_data[-2]
                    fetched.append((partition, part_data[-1], list(aborted or ())))
                elif issubclass(error, _RETRIABLE):
                    stale = True
                else:
                    raise error(f"fetching {self._topic}/{partition}")
        return fetched, stale


Fetched = tuple[int, bytes, list[tuple[int, int]]]


def _is_abort_marker(batch: Any) -> bool:
    control = next(iter(batch), None)
    return control is not None and ControlRecord.parse(control.key) == ABORT_MARKER


def _records_of(
    data: bytes,
    position: int,
    end: int | None,
    until_ms: int | None,
    aborted_transactions: list[tuple[int, int]] | None = None,
    *,
    check_crcs: bool = False,
    batch_test: BatchTest | None = None,
) -> tuple[list[RawRecord], int, int]:
    """The records at or after `position` (and below `end`) of a fetched record set, those
    stamped after `until_ms` left out; with the next position and how many were read.

    `check_crcs` checks each batch's CRC, as aiokafka's consumer does (CorruptRecordException).
    `batch_test` may rule out whole uncompressed batches that lie inside the range."""
    records: list[RawRecord] = []
    read = 0
    # Aborted transactions, as the broker lists them: (producer id, first offset). A batch of an
    # aborted producer is skipped from that first offset until the producer's abort marker.
    pending_aborts = sorted(aborted_transactions or (), key=lambda item: item[1])
    aborted_producers: set[int] = set()
    memory = MemoryRecords(data)
    batch_start = 0  # where the batch `next_batch` returns starts in `data`
    while memory.has_next():
        batch = memory.next_batch()
        if batch is None:  # a partial batch at the end of the fetch: fetched again next time
            break
        batch_end = (
            batch_start
            + _LENGTH_END
            + int.from_bytes(data[batch_start + _LENGTH_AT : batch_start + _LENGTH_END], "big")
        )
        if check_crcs and not batch.validate_crc():
            raise kafka_errors.CorruptRecordException(f"invalid CRC at offset {batch.base_offset}")
        skip = False
        if batch.producer_id is not None and batch.producer_id >= 0:
            while pending_aborts and pending_aborts[0][1] <= batch.base_offset:
                aborted_producers.add(pending_aborts.pop(0)[0])
            if batch.is_control_batch and _is_abort_marker(batch):
                aborted_producers.discard(batch.producer_id)
            skip = batch.is_transactional and batch.producer_id in aborted_producers
        if batch.is_control_batch or skip:
            pass
        elif (
            batch_test is not None
            and batch.magic == _V2
            and batch.compression_type == 0
            and batch.base_offset >= position
            and (end is None or batch.next_offset <= end)
            and not batch_test(data, batch_start + _HEADER_END, batch_end)
        ):
            # Wholly inside the range and nothing wanted in it: counted, not made into records.
            read += int.from_bytes(data[batch_start + _COUNT_AT : batch_start + _HEADER_END], "big")
        else:
            for record in batch:
                offset = record.offset
                if offset < position:
                    continue  # the fetch starts at a batch boundary before the position
                if end is not None and offset >= end:
                    return records, end, read
                read += 1
                if until_ms is None or record.timestamp <= until_ms:
                    records.append(record)
        # Compaction can empty the end of a batch: the next batch starts after its last offset.
        position = max(position, batch.next_offset)
        batch_start = batch_end
    return records, position, read


async def replay_topic_batches(
    bootstrap: str,
    topic: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    follow: bool = False,
    progress: ReplayProgress | None = None,
    client_id: str = "relaystream-replay",
    partitions: Iterable[int] | None = None,
    check_crcs: bool = False,
    batch_test: BatchTest | None = None,
    stop_at: datetime | None = None,
) -> AsyncIterator[ReplayedBatch]:
    """`replay_topic` a fetched batch at a time (never an empty one), of `partitions` (default
    all); `check_crcs` and `batch_test` as in `_records_of`. `stop_at` (not with `follow`)
    ends each partition before its first record stamped at or after it (offsets_for_times),
    where `until` would read on to the end and skip what follows.

    The next fetch is sent before a fetch's records are handed out, so the broker reads while
    the caller works."""
    described = await describe_topics(bootstrap, [topic])
    if topic not in described:
        raise LookupError(f"topic {topic!r} does not exist")
    numbers = range(described[topic].partitions) if partitions is None else sorted(partitions)
    tps = [TopicPartition(topic, p) for p in numbers]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        enable_auto_commit=False,
        group_id=None,
        # End offsets are then the last stable offsets: what committed reading can reach.
        isolation_level="read_committed",
    )
    await consumer.start()
    next_fetch: asyncio.Future[list[Fetched]] | None = None
    try:
        starts = await _start_offsets(consumer, tps, since)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        if stop_at is not None:
            ends = await _stop_offsets(consumer, ends, stop_at)
        if progress is not None:
            progress.total = sum(max(0, ends[tp] - starts[tp]) for tp in tps)
            progress.end_offsets = {tp.partition: ends[tp] for tp in tps}
        positions = {tp.partition: starts[tp] for tp in tps if follow or starts[tp] < ends[tp]}
        until_ms = None if until is None else int(until.timestamp() * 1000)
        fetcher = _PartitionFetcher(consumer, topic)
        if positions:
            next_fetch = asyncio.ensure_future(fetcher.fetch(dict(positions)))
        while next_fetch is not None:
            fetched = await next_fetch
            next_fetch = None
            batches: list[ReplayedBatch] = []
            for partition, data, aborted in fetched:
                end = None if follow else ends[TopicPartition(topic, partition)]
                records, positions[partition], read = _records_of(
                    data,
                    positions[partition],
                    end,
                    until_ms,
                    aborted,
                    check_crcs=check_crcs,
                    batch_test=batch_test,
                )
                if progress is not None:
                    progress.read += read
                if records:
                    batches.append(ReplayedBatch(topic, partition, records))
                if end is not None and positions[partition] >= end:
                    del positions[partition]
            if positions:
                next_fetch = asyncio.ensure_future(fetcher.fetch(dict(positions)))
            for batch in batches:
                yield batch
    finally:
        if next_fetch is not None:
            # The caller stopped early: the fetch under way is dropped. `wait` raises nothing of
            # the fetch's own, so a cancellation of the caller still propagates.
            next_fetch.cancel()
            await asyncio.wait([next_fetch])
            if not next_fetch.cancelled():
                next_fetch.exception()  # retrieved: an error of a fetch no one wants is moot
        await consumer.stop()
