"""The records of one message on a topic keyed by message id, found without decoding the rest.

Every event topic is keyed by the message id. Those partitioned by key (decisions, log) hold a
message's records in the one partition Kafka's default partitioner picks for the id: only that
partition is read. The co-partitioned ones (attempts, outcomes) are partitioned by queue name,
so the caller names the partitions of the message's queues; `accepted` is written to its
partitions in turn, so all of them are read, over a time window. A record
batch is made into records only when the id's bytes are in it (`replay`'s batch filter; an
uncompressed batch holds its keys verbatim), and a record is kept only when its key is the id.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from .admin import describe_topics
from .replay import ReplayedRecord, ReplayProgress, replay_topic_batches
from .topics import partition_for_key

CLIENT_ID = "relaystream-audit-why"
ALL_PARTITIONS: Literal["all"] = "all"


async def key_partition(bootstrap: str, topic: str, message_id: str) -> int:
    """The partition of `topic` that holds the records keyed by `message_id`."""
    described = await describe_topics(bootstrap, [topic])
    if topic not in described:
        raise LookupError(f"topic {topic!r} does not exist")
    return partition_for_key(message_id.encode("utf-8"), described[topic].partitions)


async def message_records(
    bootstrap: str,
    topic: str,
    message_id: str,
    *,
    partitions: Iterable[int] | Literal["all"] | None = None,
    since: datetime | None = None,
    stop_at: datetime | None = None,
    first_only: bool = False,
    progress: ReplayProgress | None = None,
) -> list[ReplayedRecord]:
    """The records keyed by `message_id` in `partitions` (default: the key's partition; a
    list, or "all") from `since` (or the beginning) to the end offsets at the start or the
    first records stamped at `stop_at`, in offset order per partition. `first_only` stops at
    the first one found (a topic that holds one record per id)."""
    if partitions is None:
        partitions = [await key_partition(bootstrap, topic, message_id)]
    elif partitions == ALL_PARTITIONS:
        partitions = None
    key = message_id.encode("utf-8")

    def holds_id(data: bytes, start: int, end: int) -> bool:
        return data.find(key, start, end) >= 0

    found: list[ReplayedRecord] = []
    async for batch in replay_topic_batches(
        bootstrap,
        topic,
        since=since,
        stop_at=stop_at,
        partitions=partitions,
        progress=progress,
        client_id=CLIENT_ID,
        batch_test=holds_id,
    ):
        for record in batch.records:
            if record.key == key:
                found.append(
                    ReplayedRecord(
                        topic,
                        batch.partition,
                        record.offset,
                        record.timestamp,
                        record.key,
                        record.value,
                    )
                )
                if first_only:
                    return found
    return found
