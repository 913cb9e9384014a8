"""LogRecord events the scheduler writes about a queued message (KumoMTA's shape)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ..core.domain.smtp_reply import SmtpResponse
from ..core.events.records import LogRecord


def message_log_record(
    kind: str,
    message: Mapping[str, Any],
    *,
    queue: str,
    response: SmtpResponse,
    now_ms: int,
    num_attempts: int,
    site: str = "",
) -> LogRecord:
    """A `kind` record (TransientFailure, AdminBounce, AdminRebind, ...) of a QueuedMessage."""
    return {
        "type": kind,  # type: ignore[typeddict-item]  # one of the schema's RecordType symbols
        "id": message["id"],
        "sender": message["sender"],
        "recipients": [message["recipient"]],
        "queue": queue,
        "site": site,
        "size": len(message["content"]),
        "response": response.to_dict(),  # type: ignore[typeddict-item]
        "peer_address": None,
        "timestamp": datetime.fromtimestamp(now_ms / 1000, UTC),
        "created": message["created_at"],
        "num_attempts": num_attempts,
        "bounce_classification": "Uncategorized",
        "egress_pool": None,
        "egress_source": None,
        "delivery_protocol": None,
        "reception_protocol": None,
        "meta": dict(message["meta"]),
        "headers": {},
        "nodeid": "",
        "session_id": None,
    }
