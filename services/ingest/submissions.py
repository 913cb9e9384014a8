"""The `submit` topic: MessageSubmitted events from upstream applications become accepted mail.

Each submission becomes one MessageAccepted per recipient with ids derived from the submission
id and the recipient's index (message_ids.submission_message_id), written in one atomic write
(acceptor.py), so a submission redelivered after a crash yields the same ids again. An event that
cannot be decoded or is invalid (bad address, no or too many recipients, too big, meta that is
not JSON) goes to dead-letter with the reason; retrying cannot fix it.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any, cast

from ..core.domain.envelope import EnvelopeAddress, EnvelopeAddressError
from ..core.events.codec import decode
from ..core.events.meta import MetaError, decode_meta
from ..core.events.records import MessageSubmitted
from ..core.kafka.consumer import ConsumedRecord
from ..core.kafka.dead_letter import RecordRejected
from . import metrics
from .accepted_messages import Reception, accepted_messages
from .acceptor import AcceptanceFailed, AtomicAcceptor
from .message_ids import submission_message_id

log = logging.getLogger(__name__)

PROTOCOL = "Kafka"
# Backoff while Kafka does not take the accepted messages (the record stays unfinished, so
# its offset is not committed and a restart redelivers it).
_RETRY_FIRST_SECONDS = 0.5
_RETRY_MAX_SECONDS = 30.0


def decode_submission(data: bytes) -> MessageSubmitted:
    """A MessageSubmitted; DecodeError (dead-lettered by the consumer) for anything else."""
    _, record = decode(data, expected="MessageSubmitted")
    return cast(MessageSubmitted, record)


def _reject(reason: str) -> RecordRejected:
    metrics.MESSAGES_REJECTED.labels(PROTOCOL, "invalid_event").inc()
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
    return sender, normalized, meta


class SubmissionHandler:
    """Handles one consumed MessageSubmitted (the kit consumer calls it)."""

    def __init__(
        self,
        acceptor: AtomicAcceptor,
        *,
        max_recipients: int,
        max_message_size: int,
        hostname: str,
        stopping: asyncio.Event,
    ) -> None:
        self._acceptor = acceptor
        self._max_recipients = max_recipients
        self._max_message_size = max_message_size
        self._hostname = hostname
        self._stopping = stopping

    async def __call__(self, record: ConsumedRecord[MessageSubmitted]) -> None:
        submission = record.value
        if submission is None:
            raise _reject("tombstone on the submit topic")
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
            # The record's time, not the clock: a redelivery then yields identical events.
            received_at=datetime.fromtimestamp(record.timestamp_ms / 1000, UTC),
            transaction_id=submission_id,
            meta={
                **meta,
                "submission_id": submission_id,
                "received_via": f"{record.topic}/{record.partition}@{record.offset}",
                "hostname": self._hostname,
            },
        )
        ids = [submission_message_id(submission_id, index) for index in range(len(recipients))]
        events = accepted_messages(reception, recipients, ids)
        await self._accept_until_stored(events, submission_id)
        metrics.MESSAGES_ACCEPTED.labels(PROTOCOL).inc(len(events))

    async def _accept_until_stored(self, events: list[Any], submission_id: str) -> None:
        delay = _RETRY_FIRST_SECONDS
        while True:
            try:
                await self._acceptor.accept(events)
                return
            except AcceptanceFailed as error:
                if self._stopping.is_set():
                    # Unfinished: not committed, redelivered after the restart.
                    raise
                log.warning(
                    "submission not accepted yet: retrying",
                    extra={"submission_id": submission_id, "error": str(error), "delay": delay},
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX_SECONDS)
