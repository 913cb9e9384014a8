"""Message ids: 32 lowercase hex digits (the MessageAccepted contract).

Mail received over SMTP or HTTP gets a random id. Mail from the `submit` topic gets an id
derived from the submission id and the recipient's index, so a redelivered submission (the
consumer is at-least-once) produces the same ids, and downstream state keyed by id (compacted
`decisions` and `queued`) absorbs the duplicate.
"""

from __future__ import annotations

import hashlib
import uuid

MESSAGE_ID_LENGTH = 32


def new_message_id() -> str:
    return uuid.uuid4().hex


def submission_message_id(submission_id: str, recipient_index: int) -> str:
    """The id of the `recipient_index`-th message of a submission; the same on every replay."""
    # The NUL separator keeps ("a1", 2) and ("a", 12) apart.
    digest = hashlib.sha256(f"{submission_id}\0{recipient_index}".encode()).hexdigest()
    return digest[:MESSAGE_ID_LENGTH]
