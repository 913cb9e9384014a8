"""The `submit` topic: MessageSubmitted events from upstream applications become accepted mail.

Each submission becomes one MessageAccepted per recipient with ids derived from the submission
id and the recipient's index (message_ids.submission_message_id). The submit loop
(submit_loop.py) produces them in a Kafka transaction together with the consumed offsets, so a
submission is on `accepted` exactly once, whatever crashes. An event that cannot be decoded or
is invalid (bad address, no or too many recipients, too big, meta that is not JSON) becomes a
dead letter with the reason, in the same transaction; retrying cannot fix it.

The policy's http_message_generated runs on each message before it is accepted (as for the
injection API; KumoMTA has no Kafka reception). A message it refuses (kumo.reject, or a policy
failure: 451 4.3.0) is written marked with the refusal and its reason, and routing records its
Rejection (and dead-letters a policy failure's record, as it always did); never dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from ..core.domain.envelope import EnvelopeAddress, EnvelopeAddressError
from ..core.events.codec import DecodeError, decode, encode
from ..core.events.meta import MetaError, decode_meta
from ..core.events.records import MessageSubmitted
from ..core.kafka.batches import Outgoing
from ..core.kafka.dead_letter import RecordRejected, dead_letter_record, poison_of
from ..core.kafka.source_record import SourceRecord
from ..core.kafka.topics import TopicCatalog, partition_for_key
from ..core.policy import ReceptionProtocol
from . import metrics
from .accepted_messages import Reception, accepted_messages
from .inject_limits import MAX_MAPPING_VALUES, json_value_count_exceeds
from .message_ids import submission_message_id
from .reception import ReceptionPolicy, Refused

log = logging.getLogger(__name__)

PROTOCOL: ReceptionProtocol = "Kafka"


def decode_submission(data: bytes) -> MessageSubmitted:
    """A MessageSubmitted; DecodeError (dead-lettered by the consumer) for anything else."""
    _, record = decode(data, expected="MessageSubmitted")
    return cast(MessageSubmitted, record)


def _reject(reason: str) -> RecordRejected:
    return RecordRejected(reason, "validation")


def validated_recipients(
    submission: MessageSubmitted, *, max_recipients: int, max_message_size: int
) -> tuple[str, list[str], dict[str, Any]]:
    """(sender, recipients, meta) normalized; RecordRejected naming the first problem."""
    if not submission["submission_id"]:
        raise _reject("empty submission_id")
    recipients = submission["recipients"]
    if not recipients:
        raise _reject("no recipients")
    if len(recipients) > max_recipients:
        raise _reject(f"{len(recipients)} recipients, at most {max_recipients} allowed")
    if len(submission["content"]) > max_message_size:
        raise _reject(
            f"content of {len(submission['content'])} bytes exceeds the limit of {max_message_size}"
        )
    if not submission["content"].strip():
        raise _reject("empty content")
    try:
        sender = str(EnvelopeAddress.parse(submission["sender"])) if submission["sender"] else ""
    except EnvelopeAddressError as error:
        raise _reject(f"sender: {error}") from None
    normalized = []
    for index, recipient in enumerate(recipients):
        try:
            normalized.append(str(EnvelopeAddress.parse(recipient)))
        except EnvelopeAddressError as error:
            raise _reject(f"recipients[{index}]: {error}") from None
    try:
        meta = decode_meta(submission["meta"])
    except MetaError as error:
        raise _reject(str(error)) from None
    if json_value_count_exceeds(meta, MAX_MAPPING_VALUES):
        raise _reject(f"meta: more than {MAX_MAPPING_VALUES} values, nested ones included")
    return sender, normalized, meta


@dataclass(frozen=True)
class AcceptedPartitions:
    """The partition counts of the topics the submit loop writes (read from the broker)."""

    accepted: int
    dead_letter: int


@dataclass(frozen=True)
class Converted:
    """What one `submit` record became: its MessageAccepted records (`accepted` of them), or
    its dead letter with the reason."""

    outgoing: tuple[Outgoing, ...] = ()
    rejections: tuple[RecordRejected, ...] = ()
    accepted: int = 0
    refused: int = 0  # messages the policy refused (written for routing to record)


class SubmissionConverter:
    """Turns a `submit` record into the records to produce in the submit loop's transaction.

    No I/O. Every record of one submission goes to one partition of `accepted`, picked from the
    submission id as Kafka's default partitioner picks it for that key: the same partition
    when the submission is converted again, and one submission's records stay together.
    """

    def __init__(
        self,
        *,
        topics: TopicCatalog,
        partitions: AcceptedPartitions,
        max_recipients: int,
        max_message_size: int,
        hostname: str,
        service: str,
        reception: ReceptionPolicy,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self._topics = topics
        self._partitions = partitions
        self._max_recipients = max_recipients
        self._max_message_size = max_message_size
        self._hostname = hostname
        self._service = service
        self._reception = reception
        self._clock_ms = clock_ms

    def __call__(self, record: SourceRecord) -> Converted:
        try:
            return self._converted(record)
        except RecordRejected as rejection:
            return self._dead_lettered(record, rejection)
        except Exception as error:  # a bug must not wedge the partition: keep the record
            log.exception("submission conversion failed", extra={"offset": record.offset})
            return self._dead_lettered(record, RecordRejected(repr(error), "conversion"))

    def _converted(self, record: SourceRecord) -> Converted:
        if record.value is None:
            raise RecordRejected("tombstone on the submit topic")
        try:
            submission = decode_submission(record.value)
        except DecodeError as error:
            raise RecordRejected(error.reason, "decode") from None
        sender, recipients, meta = validated_recipients(
            submission,
            max_recipients=self._max_recipients,
            max_message_size=self._max_message_size,
        )
        submission_id = submission["submission_id"]
        reception = Reception(
            protocol=PROTOCOL,
            sender=sender,
            content=submission["content"],
            # The record's time, not the clock: converted again, it yields identical events.
            received_at=datetime.fromtimestamp(record.timestamp / 1000, UTC),
            transaction_id=submission_id,
            meta={
                **meta,
                "submission_id": submission_id,
                "received_via": f"{record.topic}/{record.partition}@{record.offset}",
                "hostname": self._hostname,
            },
        )
        ids = [submission_message_id(submission_id, index) for index in range(len(recipients))]
        originals = accepted_messages(reception, recipients, ids)
        events = []
        refused = 0
        for original, result in zip(
            originals, self._reception.receive_now(PROTOCOL, originals), strict=True
        ):
            if isinstance(result, Refused):
                refused += 1
                log.log(
                    logging.WARNING if result.failure else logging.INFO,
                    "submission refused by the policy: recorded as a Rejection",
                    extra={
                        "submission_id": submission_id,
                        "message_id": result.message_id,
                        "response": result.reply,
                        "error": result.failure,
                    },
                )
                events.append(self._reception.refused_record(original, result))
            else:
                events.append(result)
        partition = partition_for_key(submission_id.encode("utf-8"), self._partitions.accepted)
        outgoing = tuple(
            Outgoing(
                self._topics.accepted.name,
                partition,
                event["id"].encode("utf-8"),
                encode("MessageAccepted", event),
            )
            for event in events
        )
        return Converted(outgoing=outgoing, accepted=len(events) - refused, refused=refused)

    def _dead_lettered(self, record: SourceRecord, rejection: RecordRejected) -> Converted:
        dead_letter = dead_letter_record(
            poison_of(record),
            rejection,
            topic=self._topics.dead_letter.name,
            partitions=self._partitions.dead_letter,
            service=self._service,
            failed_at_ms=self._clock_ms(),
            encode=encode,
        )
        return Converted(outgoing=(dead_letter,), rejections=(rejection,))


def count_committed(records: Sequence[Any], converted: Sequence[Converted]) -> None:
    """After a commit: the messages it accepted and the submissions it refused."""
    metrics.note_received(PROTOCOL, sum(result.accepted for result in converted))
    refused = sum(1 for result in converted if result.rejections)
    if refused:
        metrics.MESSAGES_REJECTED.labels(PROTOCOL, "invalid_event").inc(refused)
    by_policy = sum(result.refused for result in converted)
    if by_policy:
        metrics.MESSAGES_REJECTED.labels(PROTOCOL, "policy_rejected").inc(by_policy)
