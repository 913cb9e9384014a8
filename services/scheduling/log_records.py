"""LogRecord events the scheduler writes about a queued message (KumoMTA's shape)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ..core.domain.log_record import LogRecord, RecordType
from ..core.domain.smtp_reply import SmtpResponse


def message_log_record(
    kind: RecordType,
    message: Mapping[str, Any],
    *,
    queue: str,
    response: SmtpResponse,
    now_ms: int,
    num_attempts: int,
    site: str = "",
) -> LogRecord:
    """A `kind` record (TransientFailure, AdminBounce, AdminRebind, ...) of a QueuedMessage;
    the writer stamps its node id and bounce class (SchedulingWrites.log)."""
    return LogRecord(
        type=kind,
        id=message["id"],
        sender=message["sender"],
        recipients=(message["recipient"],),
        queue=queue,
        response=response,
        timestamp=datetime.fromtimestamp(now_ms / 1000, UTC),
        created=message["created_at"],
        site=site,
        size=len(message["content"]),
        num_attempts=num_attempts,
        meta=dict(message["meta"]),
    )
