"""KumoMTA-shaped log records (ROUTING.md section 9).

`LogRecord` mirrors `schemas/LogRecord.avsc`; `to_kumo_json` renders it the way KumoMTA's
JSON logs look (one recipient as a string, several as a list; `timestamp`/`created` as unix
seconds plus the full `event_time`/`created_time`; the response content on one line).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .smtp_reply import SmtpResponse


class RecordType(enum.Enum):
    RECEPTION = "Reception"
    DELIVERY = "Delivery"
    TRANSIENT_FAILURE = "TransientFailure"
    BOUNCE = "Bounce"
    EXPIRATION = "Expiration"
    ADMIN_BOUNCE = "AdminBounce"
    ADMIN_REBIND = "AdminRebind"
    DELAYED = "Delayed"
    REJECTION = "Rejection"


@dataclass(frozen=True)
class PeerAddress:
    name: str
    addr: str


@dataclass(frozen=True)
class LogRecord:
    type: RecordType
    id: str
    sender: str
    recipients: tuple[str, ...]
    queue: str
    response: SmtpResponse
    timestamp: datetime
    created: datetime
    site: str = ""
    size: int = 0
    peer_address: PeerAddress | None = None
    num_attempts: int = 0
    bounce_classification: str = "Uncategorized"
    egress_pool: str | None = None
    egress_source: str | None = None
    delivery_protocol: str | None = None
    reception_protocol: str | None = None
    meta: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    nodeid: str = ""
    session_id: str | None = None

    def to_avro(self) -> dict[str, Any]:
        """The record as a dict for the Avro `LogRecord` schema (timestamps as aware
        datetimes, which fastavro writes as timestamp-millis)."""
        return {
            "type": self.type.value,
            "id": self.id,
            "sender": self.sender,
            "recipients": list(self.recipients),
            "queue": self.queue,
            "site": self.site,
            "size": self.size,
            "response": self.response.to_dict(),
            "peer_address": None
            if self.peer_address is None
            else {"name": self.peer_address.name, "addr": self.peer_address.addr},
            "timestamp": _utc(self.timestamp),
            "created": _utc(self.created),
            "num_attempts": self.num_attempts,
            "bounce_classification": self.bounce_classification,
            "egress_pool": self.egress_pool,
            "egress_source": self.egress_source,
            "delivery_protocol": self.delivery_protocol,
            "reception_protocol": self.reception_protocol,
            "meta": dict(self.meta),
            "headers": dict(self.headers),
            "nodeid": self.nodeid,
            "session_id": self.session_id,
        }

    @classmethod
    def from_avro(cls, value: Mapping[str, Any]) -> LogRecord:
        peer = value.get("peer_address")
        return cls(
            type=RecordType(value["type"]),
            id=value["id"],
            sender=value["sender"],
            recipients=tuple(value["recipients"]),
            queue=value["queue"],
            response=SmtpResponse.from_dict(value["response"]),
            timestamp=_as_datetime(value["timestamp"]),
            created=_as_datetime(value["created"]),
            site=value.get("site", ""),
            size=value.get("size", 0),
            peer_address=None if peer is None else PeerAddress(peer["name"], peer["addr"]),
            num_attempts=value.get("num_attempts", 0),
            bounce_classification=value.get("bounce_classification", "Uncategorized"),
            egress_pool=value.get("egress_pool"),
            egress_source=value.get("egress_source"),
            delivery_protocol=value.get("delivery_protocol"),
            reception_protocol=value.get("reception_protocol"),
            meta=dict(value.get("meta", {})),
            headers=dict(value.get("headers", {})),
            nodeid=value.get("nodeid", ""),
            session_id=value.get("session_id"),
        )


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"log record times must be timezone-aware, got {moment!r}")
    return moment.astimezone(UTC)


def _as_datetime(value: datetime | int) -> datetime:
    if isinstance(value, datetime):
        return _utc(value)
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def _rfc3339(moment: datetime) -> str:
    return _utc(moment).isoformat().replace("+00:00", "Z")


def to_kumo_json(record: LogRecord) -> dict[str, Any]:
    """The record as KumoMTA's JSON log shows it."""
    recipients = list(record.recipients)
    rendered: dict[str, Any] = {
        "type": record.type.value,
        "id": record.id,
        "sender": record.sender,
        "recipient": recipients[0] if len(recipients) == 1 else recipients,
        "queue": record.queue,
        "site": record.site,
        "size": record.size,
        "response": record.response.to_dict(),
        "peer_address": None
        if record.peer_address is None
        else {"name": record.peer_address.name, "addr": record.peer_address.addr},
        "timestamp": int(_utc(record.timestamp).timestamp()),
        "event_time": _rfc3339(record.timestamp),
        "created": int(_utc(record.created).timestamp()),
        "created_time": _rfc3339(record.created),
        "num_attempts": record.num_attempts,
        "bounce_classification": record.bounce_classification,
        "egress_pool": record.egress_pool,
        "egress_source": record.egress_source,
        "source_address": None,
        "feedback_report": None,
        "meta": dict(record.meta),
        "headers": dict(record.headers),
        "delivery_protocol": record.delivery_protocol,
        "reception_protocol": record.reception_protocol,
        "nodeid": record.nodeid,
    }
    if record.session_id is not None:
        rendered["session_id"] = record.session_id
    return rendered
