"""Send many records as one record batch per topic-partition.

`AIOKafkaProducer.send` costs a coroutine, a partitioner call and an acknowledgement future
per record, and every future's completion is a callback on the event loop: at thousands of
records per second that bookkeeping cost the routing service more CPU than the policy. A
service that already knows each record's partition (a transaction's output) builds the
batches itself: one future per batch, the same bytes on the wire.

Used inside a transaction too: `send_batch` adds the partition to the transaction like `send`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Outgoing:
    """One record to produce, its partition already chosen."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes | None


class RecordTooLarge(ValueError):
    """A record that does not fit an empty batch (aiokafka accepts any first record, so this
    means the producer refused it for another reason)."""


async def send_in_batches(producer: Any, records: Iterable[Outgoing]) -> list[asyncio.Future[Any]]:
    """Hands `records` to `producer` in per-partition batches, keeping each partition's order.

    Returns one future per batch; each resolves when the broker acknowledged the batch, or
    fails with the broker's error. A batch is handed over as soon as it is full (the
    producer's `max_batch_size`), the rest at the end.
    """
    builders: dict[tuple[str, int], Any] = {}
    acknowledgements: list[asyncio.Future[Any]] = []
    for record in records:
        where = (record.topic, record.partition)
        builder = builders.get(where)
        if builder is None:
            builder = builders[where] = producer.create_batch()
        if builder.append(key=record.key, value=record.value, timestamp=None) is None:
            acknowledgements.append(
                await producer.send_batch(builder, record.topic, partition=record.partition)
            )
            builder = builders[where] = producer.create_batch()
            if builder.append(key=record.key, value=record.value, timestamp=None) is None:
                raise RecordTooLarge(f"a record for {record.topic}[{record.partition}]")
    for (topic, partition), builder in builders.items():
        acknowledgements.append(await producer.send_batch(builder, topic, partition=partition))
    return acknowledgements
