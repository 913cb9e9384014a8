"""Publishing mail from an upstream Python application: one MessageSubmitted on `submit`.

    async with EventProducer(bootstrap, client_id="billing") as producer:
        submission_id = await publish_submission(
            producer, "noreply@example.com", ["alice@example.org"], message_bytes,
            meta={"tenant": "billing"},
        )

The call returns once Kafka acknowledged the event (acks=all): from then on the mail is the
pipeline's responsibility. The ingest service validates the event and turns it into one
accepted message per recipient; an invalid one (bad address, too big) goes to dead-letter.
`submission_id` is the idempotency key: publishing again with the same id (say, after a
timeout whose outcome is unknown) yields the same message ids, which downstream state absorbs.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ..events.codec import encode
from ..events.meta import encode_meta
from ..events.records import MessageSubmitted
from .producer import EventProducer
from .topics import declare_topics

SUBMITTED_SCHEMA = "MessageSubmitted"


class SubmissionError(ValueError):
    """The submission is unusable as given; nothing was published."""


def submission_event(
    sender: str,
    recipients: Sequence[str],
    content: bytes,
    *,
    meta: Mapping[str, Any] | None = None,
    submission_id: str | None = None,
    submitted_at: datetime | None = None,
) -> MessageSubmitted:
    """The MessageSubmitted event; SubmissionError for what can be seen wrong without I/O."""
    if isinstance(recipients, str):
        raise SubmissionError("recipients must be a sequence of addresses, not one string")
    if not recipients:
        raise SubmissionError("at least one recipient is required")
    if not isinstance(content, bytes | bytearray) or not content:
        raise SubmissionError("content must be the non-empty RFC 5322 message as bytes")
    if submission_id is not None and not submission_id:
        raise SubmissionError("submission_id must not be empty")
    return {
        "submission_id": submission_id or uuid.uuid4().hex,
        "sender": sender,
        "recipients": list(recipients),
        "content": bytes(content),
        "meta": encode_meta(meta or {}),
        "submitted_at": submitted_at or datetime.now(UTC),
    }


async def publish_submission(
    producer: EventProducer,
    sender: str,
    recipients: Sequence[str],
    content: bytes,
    meta: Mapping[str, Any] | None = None,
    submission_id: str | None = None,
    *,
    topic: str | None = None,
) -> str:
    """Publish one submission (key = submission id) and return its id once Kafka has it.

    `sender` "" is the null reverse path; `meta` values must be JSON-serialisable; `topic`
    defaults to the `submit` topic of the default prefix.
    """
    event = submission_event(sender, recipients, content, meta=meta, submission_id=submission_id)
    await producer.send(
        topic or declare_topics().submit.name,
        encode(SUBMITTED_SCHEMA, event),
        key=event["submission_id"],
    )
    return event["submission_id"]
