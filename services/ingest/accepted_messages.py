"""One MessageAccepted event per recipient (KumoMTA's BifurcateAlways), as the codec takes it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..core.events.meta import encode_meta
from ..core.events.records import MessageAccepted


@dataclass(frozen=True)
class Reception:
    """What every message split from one transaction, request or submission shares."""

    protocol: str  # ESMTP, HTTP or Kafka (reception_protocol)
    sender: str  # "" for the null reverse path
    content: bytes
    received_at: datetime
    transaction_id: str
    meta: Mapping[str, Any]  # connection facts and the like, as JSON values


def accepted_messages(
    reception: Reception,
    recipients: Sequence[str],
    message_ids: Sequence[str],
    per_recipient_meta: Sequence[Mapping[str, Any]] | None = None,
) -> list[MessageAccepted]:
    """The events of `reception`: recipient i gets id `message_ids[i]`.

    `per_recipient_meta[i]` (e.g. the HTTP API's `extra`) is merged over the shared meta.
    Raises MetaError if a meta value is not JSON-serialisable.
    """
    if len(message_ids) != len(recipients):
        raise ValueError("one message id per recipient")
    if per_recipient_meta is not None and len(per_recipient_meta) != len(recipients):
        raise ValueError("one meta mapping per recipient")
    shared = {**reception.meta, "reception_protocol": reception.protocol}
    events: list[MessageAccepted] = []
    for index, (recipient, message_id) in enumerate(zip(recipients, message_ids, strict=True)):
        meta = shared if per_recipient_meta is None else {**shared, **per_recipient_meta[index]}
        events.append(
            {
                "id": message_id,
                "sender": reception.sender,
                "recipient": recipient,
                "content": reception.content,
                "meta": encode_meta(meta),
                "reception_protocol": reception.protocol,
                "received_at": reception.received_at,
                "transaction_id": reception.transaction_id,
                "reception_policy": None,  # ingest.reception fills it in
            }
        )
    return events
