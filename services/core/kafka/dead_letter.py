"""Records a service cannot decode or validate go to `dead-letter`, and the consumer goes on.

The DeadLetter event (schemas/DeadLetter.avsc) keeps the original key and value bytes with the
source topic, partition and offset, so an operator can inspect the record and replay it once
the cause is fixed. The poison record's offset then counts as finished: it never blocks commits.

The dead letter's Kafka key is its id, `dead_letter_id(topic, partition, offset)`: the source
record's coordinates, so the same poison record dead-lettered again (a redelivery after a crash,
a compacted topic re-read on every start, several instances following one control topic) is the
same key on the compacted `dead-letter` topic, and an operator resolves it by tombstoning that
key (`dead_letter_store`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import metrics
from .batches import Outgoing
from .producer import EventProducer
from .topics import partition_for_key

log = logging.getLogger(__name__)

DEAD_LETTER_SCHEMA = "DeadLetter"

# `encode(schema_name, record) -> bytes`: the Avro codec of core/events.
Encode = Callable[[str, dict[str, Any]], bytes]


class RecordRejected(Exception):
    """A record is invalid and retrying cannot help: it goes to the dead-letter topic.

    Raised by a consumer's decoder or handler; `error_type` is a short stable category
    (`decode`, `validation`, ...), the message is the human-readable reason.
    """

    def __init__(self, reason: str, error_type: str = "validation") -> None:
        super().__init__(reason)
        self.reason = reason
        self.error_type = error_type


def dead_letter_id(topic: str, partition: int, offset: int) -> str:
    """The stable id (and Kafka key) of the dead letter of a source record: `topic/p/offset`.

    Topic names cannot contain '/', so the id parses back unambiguously."""
    return f"{topic}/{partition}/{offset}"


@dataclass(frozen=True)
class PoisonRecord:
    """Where a rejected record came from, and its bytes as they were."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @property
    def dead_letter_id(self) -> str:
        return dead_letter_id(self.topic, self.partition, self.offset)


def poison_of(record: Any) -> PoisonRecord:
    """A consumed record as the dead-letter topic keeps it."""
    return PoisonRecord(record.topic, record.partition, record.offset, record.key, record.value)


def dead_letter_event(
    record: PoisonRecord, *, reason: str, error_type: str, service: str, failed_at_ms: int
) -> dict[str, Any]:
    """The DeadLetter event for `record`, as the codec takes it."""
    return {
        "source_topic": record.topic,
        "source_partition": record.partition,
        "source_offset": record.offset,
        "key": record.key,
        "value": record.value,
        "reason": reason,
        "error_type": error_type,
        "service": service,
        "failed_at": failed_at_ms,
    }


def dead_letter_record(
    record: PoisonRecord,
    rejection: RecordRejected,
    *,
    topic: str,
    partitions: int,
    service: str,
    failed_at_ms: int,
    encode: Encode,
) -> Outgoing:
    """The dead letter of `record` as a record to produce (in a transaction, say): keyed by
    its stable id, on the partition the default partitioner picks for that key, as every
    other writer of dead letters does."""
    event = dead_letter_event(
        record,
        reason=rejection.reason,
        error_type=rejection.error_type,
        service=service,
        failed_at_ms=failed_at_ms,
    )
    key = record.dead_letter_id.encode("utf-8")
    return Outgoing(
        topic, partition_for_key(key, partitions), key, encode(DEAD_LETTER_SCHEMA, event)
    )


class DeadLetters:
    """Sends rejected records of one service to its dead-letter topic."""

    def __init__(
        self,
        producer: EventProducer,
        *,
        topic: str,
        service: str,
        encode: Encode,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._service = service
        self._encode = encode
        self._clock_ms = clock_ms

    async def send(self, record: PoisonRecord, rejection: RecordRejected, *, group: str) -> None:
        """Produce the DeadLetter event and wait for Kafka's acknowledgement."""
        event = dead_letter_event(
            record,
            reason=rejection.reason,
            error_type=rejection.error_type,
            service=self._service,
            failed_at_ms=self._clock_ms(),
        )
        # Keyed by the source coordinates: dead-lettering the same record again replaces it.
        await self._producer.send(
            self._topic, self._encode(DEAD_LETTER_SCHEMA, event), key=record.dead_letter_id
        )
        note_dead_lettered(group, record.topic, record.partition, record.offset, rejection)


def note_dead_lettered(
    group: str, topic: str, partition: int, offset: int, rejection: RecordRejected
) -> None:
    """Counts a record sent to `dead-letter` and logs where it came from and why."""
    metrics.DEAD_LETTERED_RECORDS.labels(group, topic).inc()
    log.warning(
        "record dead-lettered",
        extra={
            "source_topic": topic,
            "source_partition": partition,
            "source_offset": offset,
            "error_type": rejection.error_type,
            "reason": rejection.reason,
        },
    )
