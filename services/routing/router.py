"""What one `accepted` record becomes: the records routing produces for it, as bytes.

No I/O: `Router.route(record)` decodes the record, runs the decision (the policy, CPU only)
and returns the outgoing records with their topics, keys and partitions. The batch loop
(core/kafka/transactional_loop.py) sends them inside the batch's Kafka transaction.

- A decided message: a RoutingDecision on `decisions`, a LogRecord on `log` and, when QUEUED,
  a QueuedMessage on `queued` on its queue's partition; all keyed by the message id.
- A failed policy: the REJECTED decision and Rejection log as above, plus a dead-letter copy
  of the original record so an operator can replay it once the policy is fixed.
- An undecodable or unroutable record, or a bug in the decision: a dead-letter record only.
  The service goes on; one bad record must not hold up its partition.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast

from ..core.domain.log_writer import ANONYMOUS, LogWriter
from ..core.events.codec import DecodeError, decode, encode
from ..core.events.records import MessageAccepted, RoutingOutcome
from ..core.kafka.batches import Outgoing
from ..core.kafka.dead_letter import RecordRejected, dead_letter_record, poison_of
from ..core.kafka.source_record import SourceRecord
from ..core.kafka.topics import TopicCatalog, key_hash, partition_for_queue
from ..core.policy import Policy
from .decision import InvalidAccepted, RoutingResult, decide

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutputPartitions:
    """The partition counts of the topics routing writes (read from the broker at start)."""

    queued: int
    decisions: int
    log: int
    dead_letter: int


@dataclass(frozen=True)
class Routed:
    """The outcome of one source record: what to produce and what to count once committed.

    `outcome` is None when no decision was made (the record is dead-lettered only).
    `rejections` are the reasons the record was dead-lettered, for logs and metrics.
    """

    outgoing: tuple[Outgoing, ...] = ()
    outcome: RoutingOutcome | None = None
    rejections: tuple[RecordRejected, ...] = field(default_factory=tuple)


class Router:
    """Turns `accepted` records into the records of their routing decisions."""

    def __init__(
        self,
        *,
        policy: Policy,
        topics: TopicCatalog,
        partitions: OutputPartitions,
        service: str,
        log_writer: LogWriter = ANONYMOUS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self._policy = policy
        self._topics = topics
        self._partitions = partitions
        self._service = service
        self._log_writer = log_writer
        self._clock = clock
        self._clock_ms = clock_ms

    def route(self, record: SourceRecord) -> Routed:
        if record.value is None:
            return Routed()  # `accepted` is not compacted; a tombstone carries nothing to route
        try:
            _, decoded = decode(record.value, expected="MessageAccepted")
        except DecodeError as err:
            return self._dead_lettered(record, RecordRejected(err.reason, "decode"))
        accepted = cast(MessageAccepted, decoded)
        try:
            result = decide(
                accepted, self._policy, decided_at=self._clock(), log_writer=self._log_writer
            )
        except InvalidAccepted as err:
            return self._dead_lettered(record, RecordRejected(str(err), "validation"))
        except Exception as err:  # a bug must not wedge the partition: keep the record
            log.exception("routing failed", extra={"message_id": accepted["id"]})
            return self._dead_lettered(record, RecordRejected(repr(err), "routing"))
        return self._decided(record, accepted["id"], result)

    def _decided(self, record: SourceRecord, message_id: str, result: RoutingResult) -> Routed:
        topics, partitions = self._topics, self._partitions
        key = message_id.encode("utf-8")
        # Partitioned by key as the producer's default partitioner would, so writers agree.
        hashed = key_hash(key)
        outgoing = [
            Outgoing(
                topics.decisions.name,
                hashed % partitions.decisions,
                key,
                encode("RoutingDecision", result.decision),
            ),
            Outgoing(
                topics.log.name,
                hashed % partitions.log,
                key,
                encode("LogRecord", result.log),
            ),
        ]
        if result.queued is not None:
            outgoing.append(
                Outgoing(
                    topics.queued.name,
                    partition_for_queue(result.queued["queue"], partitions.queued),
                    key,
                    encode("QueuedMessage", result.queued),
                )
            )
        rejections: tuple[RecordRejected, ...] = ()
        failure = result.policy_failure
        if failure is not None:
            rejection = RecordRejected(f"policy {failure.reason}: {failure.message}", "policy")
            outgoing.append(self._dead_letter(record, rejection))
            rejections = (rejection,)
        return Routed(tuple(outgoing), result.outcome, rejections)

    def _dead_lettered(self, record: SourceRecord, rejection: RecordRejected) -> Routed:
        return Routed((self._dead_letter(record, rejection),), None, (rejection,))

    def _dead_letter(self, record: SourceRecord, rejection: RecordRejected) -> Outgoing:
        return dead_letter_record(
            poison_of(record),
            rejection,
            topic=self._topics.dead_letter.name,
            partitions=self._partitions.dead_letter,
            service=self._service,
            failed_at_ms=self._clock_ms(),
            encode=encode,
        )
