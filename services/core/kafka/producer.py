"""The producer every service uses: idempotent, acks=all, batched, one topic config for sizes.

`send` returns once every in-sync replica has the record (acks=all), so a caller may answer its
client (SMTP 250, HTTP 200) afterwards and nothing accepted is lost. Idempotence keeps retries
from duplicating records. Concurrent `send` calls share batches (linger 20 ms), so throughput
comes from calling it concurrently, not from fire-and-forget.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaProducer
from aiokafka.codec import has_gzip, has_lz4, has_snappy, has_zstd

from ..runtime.settings import KAFKA_COMPRESSION_CODECS
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


# aiokafka 0.14 compresses gzip with the standard library and the other three with cramjam.
_CODEC_PACKAGES = {"snappy": "cramjam", "lz4": "cramjam", "zstd": "cramjam"}
_AVAILABLE: dict[str, Callable[[], bool]] = {
    "none": lambda: True,
    "gzip": has_gzip,
    "snappy": has_snappy,
    "lz4": has_lz4,
    "zstd": has_zstd,
}
_compression: str | None = None


class CompressionUnavailable(ValueError):
    """The codec named is not one Kafka knows, or its Python package is not installed."""


def use_compression(codec: str) -> None:
    """Make `codec` the batch compression of every producer this process creates afterwards.

    The service runtime calls it once with the `kafka_compression` setting, before any producer
    exists; a codec whose package is missing is an error then, not at the first send.
    """
    global _compression
    if codec not in KAFKA_COMPRESSION_CODECS:
        raise CompressionUnavailable(
            f"kafka_compression: unknown codec {codec!r}; one of "
            + ", ".join(KAFKA_COMPRESSION_CODECS)
        )
    if not _AVAILABLE[codec]():
        raise CompressionUnavailable(
            f"kafka_compression {codec} needs the Python package {_CODEC_PACKAGES[codec]}"
            " (pip install 'relaystream[compression]')"
        )
    _compression = None if codec == "none" else codec


def compression_type() -> str | None:
    """The producers' `compression_type`: the codec `use_compression` set, None for none."""
    return _compression


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
            compression_type=compression if compression is not None else compression_type(),
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
