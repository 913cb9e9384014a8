"""KumoMTA-shaped log records (ROUTING.md section 9).

`LogRecord` mirrors `schemas/LogRecord.avsc`; `to_kumo_json` renders it exactly as KumoMTA's
`JsonLogRecord` serialises (crates/kumo-log-types): its fields in its order; one recipient as a
string, several as a list; `timestamp`/`created` as unix seconds each followed by the RFC 3339
`event_time`/`created_time`; the response content on one line; meta and headers values as JSON
values (the Avro record holds them as JSON text); the TLS fields, `provider_name` and
`session_id` left out when unknown, as KumoMTA's serde does.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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


# KumoMTA's nodeid is a UUID; records written before relaystream had one show the nil UUID.
NIL_NODE_ID = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class PeerAddress:
    name: str
    addr: str


@dataclass(frozen=True)
class SourceAddress:
    """Our end of an outbound connection (KumoMTA's MaybeProxiedSourceAddress)."""

    address: str
    server: str | None = None
    protocol: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"address": self.address, "server": self.server, "protocol": self.protocol}

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> SourceAddress:
        return cls(value["address"], value.get("server"), value.get("protocol"))


@dataclass(frozen=True)
class TlsDetails:
    """The TLS session a record's SMTP conversation ran over."""

    cipher: str
    protocol_version: str
    peer_subject_name: tuple[str, ...] | None = None


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
    source_address: SourceAddress | None = None
    feedback_report: str | None = None  # JSON text
    tls: TlsDetails | None = None
    provider_name: str | None = None

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
            "source_address": None
            if self.source_address is None
            else self.source_address.to_dict(),
            "feedback_report": self.feedback_report,
            "tls_cipher": None if self.tls is None else self.tls.cipher,
            "tls_protocol_version": None if self.tls is None else self.tls.protocol_version,
            "tls_peer_subject_name": None
            if self.tls is None or self.tls.peer_subject_name is None
            else list(self.tls.peer_subject_name),
            "provider_name": self.provider_name,
        }

    @classmethod
    def from_avro(cls, value: Mapping[str, Any]) -> LogRecord:
        peer = value.get("peer_address")
        source = value.get("source_address")
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
            source_address=None if source is None else SourceAddress.from_dict(source),
            feedback_report=value.get("feedback_report"),
            tls=_tls_from_avro(value),
            provider_name=value.get("provider_name"),
        )


def _tls_from_avro(value: Mapping[str, Any]) -> TlsDetails | None:
    cipher, version = value.get("tls_cipher"), value.get("tls_protocol_version")
    if cipher is None or version is None:
        return None
    subject: Sequence[str] | None = value.get("tls_peer_subject_name")
    return TlsDetails(cipher, version, None if subject is None else tuple(subject))


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"log record times must be timezone-aware, got {moment!r}")
    return moment.astimezone(UTC)


def _as_datetime(value: datetime | int) -> datetime:
    if isinstance(value, datetime):
        return _utc(value)
    return datetime.fromtimestamp(value / 1000, tz=UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def unix_seconds(moment: datetime) -> int:
    """Whole seconds since the epoch, rounded down as chrono's `timestamp()` (also before
    1970, where int() of a float would round towards zero)."""
    return (_utc(moment) - _EPOCH) // timedelta(seconds=1)


def rfc3339(moment: datetime) -> str:
    """As chrono serialises a `DateTime<Utc>` (KumoMTA's `event_time`): the fraction of a
    second only as long as needed in groups of three digits (none, .mmm, .uuuuuu), then `Z`."""
    utc = _utc(moment)
    text = utc.replace(tzinfo=None, microsecond=0).isoformat()
    micros = utc.microsecond
    if micros == 0:
        fraction = ""
    elif micros % 1000 == 0:
        fraction = f".{micros // 1000:03d}"
    else:
        fraction = f".{micros:06d}"
    return f"{text}{fraction}Z"


def json_values(texts: Mapping[str, str]) -> dict[str, Any]:
    """meta/headers as KumoMTA logs them: each JSON text as its value (a text that is not
    JSON, which no writer of ours produces, shows as the string it is)."""
    values: dict[str, Any] = {}
    for key, text in texts.items():
        try:
            values[key] = json.loads(text)
        except ValueError:
            values[key] = text
    return values


def to_kumo_json(record: LogRecord) -> dict[str, Any]:
    """The record as KumoMTA's JSON log shows it: every field of its JsonLogRecord, in order."""
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
        "timestamp": unix_seconds(record.timestamp),
        "event_time": rfc3339(record.timestamp),
        "created": unix_seconds(record.created),
        "created_time": rfc3339(record.created),
        "num_attempts": record.num_attempts,
        "bounce_classification": record.bounce_classification,
        "egress_pool": record.egress_pool,
        "egress_source": record.egress_source,
        "source_address": None
        if record.source_address is None
        else _without_none(record.source_address.to_dict()),
        "feedback_report": None
        if record.feedback_report is None
        else json.loads(record.feedback_report),
        "meta": json_values(record.meta),
        "headers": json_values(record.headers),
        "delivery_protocol": record.delivery_protocol,
        "reception_protocol": record.reception_protocol,
        "nodeid": record.nodeid or NIL_NODE_ID,
    }
    if record.tls is not None:
        rendered["tls_cipher"] = record.tls.cipher
        rendered["tls_protocol_version"] = record.tls.protocol_version
        if record.tls.peer_subject_name is not None:
            rendered["tls_peer_subject_name"] = list(record.tls.peer_subject_name)
    if record.provider_name is not None:
        rendered["provider_name"] = record.provider_name
    if record.session_id is not None:
        rendered["session_id"] = record.session_id
    return rendered


def _without_none(fields: Mapping[str, str | None]) -> dict[str, str]:
    """KumoMTA leaves a source address's `server` and `protocol` out when no proxy was used."""
    return {key: value for key, value in fields.items() if value is not None}
