"""The records the scheduler writes: to `queued` (the spool), `log` and the dead-letter topic.

Every write is awaited (acknowledged) by its caller before the state moves on, so a failed
write leaves the message waiting (or its outcome unapplied) rather than lost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core.domain.log_record import LogRecord
from ..core.domain.log_writer import LogWriter
from ..core.events.codec import DecodeError, decode, encode
from ..core.kafka.dead_letter import DeadLetters, PoisonRecord, RecordRejected, poison_of
from ..core.kafka.producer import EventProducer
from ..core.kafka.topics import TopicCatalog
from ..core.spool.entry import SpoolEntry


class SchedulingWrites:
    def __init__(
        self,
        producer: EventProducer,
        topics: TopicCatalog,
        *,
        service: str,
        log_writer: LogWriter,
    ) -> None:
        self._producer = producer
        self._log_writer = log_writer
        self._topics = topics
        self._service = service
        self._dead_letters = DeadLetters(
            producer, topic=topics.dead_letter.name, encode=encode, service=service
        )

    @property
    def dead_letters(self) -> DeadLetters:
        return self._dead_letters

    async def log(self, message_id: str, record: LogRecord) -> None:
        stamped = self._log_writer.stamp(record).to_avro()
        await self._producer.send(
            self._topics.log.name, encode("LogRecord", stamped), key=message_id
        )

    async def queued(self, message_id: str, value: bytes, partition: int) -> None:
        await self._producer.send(
            self._topics.queued.name, value, key=message_id, partition=partition
        )

    async def tombstone(self, entry: SpoolEntry) -> None:
        await self._producer.send(
            self._topics.queued.name, None, key=entry.id, partition=entry.partition
        )

    async def dead_letter(self, poison: PoisonRecord, rejected: RecordRejected) -> None:
        await self._dead_letters.send(poison, rejected, group=self._service)

    async def dead_letter_record(self, record: Any, rejected: RecordRejected) -> None:
        await self.dead_letter(poison_of(record), rejected)

    async def decode_queued(
        self, entry: SpoolEntry, value: bytes, forget: Callable[[SpoolEntry], None]
    ) -> dict[str, Any] | None:
        """The QueuedMessage of `entry`, fully decoded; None if it does not decode: then it is
        forgotten (dropped from the index first, so it cannot be released meanwhile) and
        dead-lettered rather than failing the service.
        The index walk refuses such records already (core/spool/index.py); this keeps a gap
        there from becoming a crash loop again."""
        try:
            _, message = decode(value, "QueuedMessage")
        except DecodeError as error:
            poison = PoisonRecord(
                self._topics.queued.name,
                entry.partition,
                entry.offset,
                entry.id.encode("utf-8"),
                value,
            )
            forget(entry)
            await self.dead_letter(poison, RecordRejected(error.reason, "decode"))
            return None
        return dict(message)
