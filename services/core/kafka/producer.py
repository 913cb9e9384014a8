"""The producer every service uses: idempotent, acks=all, batched, one topic config for sizes.

`send` returns once every in-sync replica has the record (acks=all), so a caller may answer its
client (SMTP 250, HTTP 200) afterwards and nothing accepted is lost. Idempotence keeps retries
from duplicating records. Concurrent `send` calls share batches (linger 20 ms), so throughput
comes from calling it concurrently, not from fire-and-forget.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaProducer
from aiokafka.codec import has_lz4, has_zstd

from . import metrics
from .topics import CONTENT_MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

# One request may carry the largest record any topic accepts (mail content topics).
MAX_REQUEST_SIZE = CONTENT_MAX_MESSAGE_BYTES
# Sends within this window share one produce request. The broker's CPU goes per request: under
# `relaystream bench` 20 ms rather than 5 cut the pipeline's requests from ~590/s to ~380/s and
# the broker's CPU per message by a fifth; the records wait at most that long.
LINGER_MS = 20
MAX_BATCH_SIZE = 256 * 1024


def best_compression() -> str | None:
    """zstd or lz4 when aiokafka can use them (they need cramjam), otherwise none.

    Not gzip: aiokafka compresses at level 9 in pure Python, about 250 us per 1 KiB batch plus
    170 us to decompress in every reader, and the broker validates compressed batches too.
    Measured under `relaystream bench` that CPU costs more throughput than the bytes it saves
    on a LAN; the mail records here are small and per-transaction batches hold few of them.
    """
    if has_zstd():
        return "zstd"
    if has_lz4():
        return "lz4"
    return None


@dataclass(frozen=True)
class Delivered:
    """Where Kafka stored a record."""

    topic: str
    partition: int
    offset: int


Key = bytes | str | None


def _key_bytes(key: Key) -> bytes | None:
    return key.encode("utf-8") if isinstance(key, str) else key


class EventProducer:
    """An idempotent acks=all producer; use as `async with EventProducer(...) as producer`."""

    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str,
        compression: str | None = None,
        linger_ms: int = LINGER_MS,
        max_batch_size: int = MAX_BATCH_SIZE,
        max_request_size: int = MAX_REQUEST_SIZE,
        request_timeout_ms: int = 30_000,
    ) -> None:
        self._producer: Any = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            compression_type=compression if compression is not None else best_compression(),
            linger_ms=linger_ms,
            max_batch_size=max_batch_size,
            max_request_size=max_request_size,
            request_timeout_ms=request_timeout_ms,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        """Flush what is pending and close."""
        await self._producer.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: Key = None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Delivered:
        """Produce one record and wait until Kafka acknowledged it.

        `value=None` is a tombstone (deletes `key` from a compacted topic). `partition` pins
        the partition (queued/attempts/outcomes: `topics.partition_for_queue`); otherwise
        Kafka's default partitioner hashes the key.
        """
        try:
            pending = await self._producer.send(
                topic, value=value, key=_key_bytes(key), partition=partition, headers=headers
            )
            stored = await pending
        except Exception:
            metrics.PRODUCE_FAILURES.labels(topic).inc()
            raise
        metrics.PRODUCED_RECORDS.labels(topic).inc()
        return Delivered(topic=stored.topic, partition=stored.partition, offset=stored.offset)

    async def flush(self) -> None:
        await self._producer.flush()

    async def partitions_for(self, topic: str) -> int:
        """How many partitions `topic` has (to compute an explicit partition)."""
        partitions = await self._producer.partitions_for(topic)
        return len(partitions)
