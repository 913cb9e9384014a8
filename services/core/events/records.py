"""Typed shapes of the events, one TypedDict per contract in `schemas/`, for mypy.

`decode` returns plain dicts of exactly these shapes (every field present, defaults filled
in); `encode` accepts them. Timestamps are UTC-aware datetimes; `meta` maps hold JSON texts
(see `meta.encode_meta`). tests/unit/test_codec.py checks these against the schemas.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, TypedDict

AdminAction = Literal["SUSPEND", "BOUNCE", "REBIND", "SUSPEND_READY_Q"]
OutcomeKind = Literal["DELIVERED", "TRANSIENT_FAILURE", "BOUNCE"]
RoutingOutcome = Literal["QUEUED", "REJECTED", "DISCARDED"]
RecordType = Literal[
    "Reception",
    "Delivery",
    "TransientFailure",
    "Bounce",
    "Expiration",
    "AdminBounce",
    "AdminRebind",
    "Delayed",
    "Rejection",
]

# `class` is a Python keyword, hence the functional form.
EnhancedStatusCode = TypedDict("EnhancedStatusCode", {"class": int, "subject": int, "detail": int})


class SmtpResponse(TypedDict):
    code: int
    enhanced_code: EnhancedStatusCode | None
    content: str
    command: str | None


class PeerAddress(TypedDict):
    name: str
    addr: str


class MessageSubmitted(TypedDict):
    submission_id: str
    sender: str
    recipients: list[str]
    content: bytes
    meta: dict[str, str]
    submitted_at: datetime


class ReceptionPolicyRun(TypedDict):
    policy_hash: str
    policy_name: str
    meta_before: dict[str, str]
    sender_before: str | None
    recipient_before: str | None
    headers_before: str | None
    rejection: SmtpResponse | None
    failure: str | None


class MessageAccepted(TypedDict):
    id: str
    sender: str
    recipient: str
    content: bytes
    meta: dict[str, str]
    reception_protocol: str
    received_at: datetime
    transaction_id: str | None
    reception_policy: ReceptionPolicyRun | None


class RoutingDecision(TypedDict):
    id: str
    decided_at: datetime
    received_at: datetime
    sender: str
    recipient: str
    reception_protocol: str
    headers: str
    meta_before: dict[str, str]
    meta_after: dict[str, str]
    outcome: RoutingOutcome
    queue: str | None
    campaign: str | None
    tenant: str | None
    domain: str | None
    routing_domain: str | None
    rejection: SmtpResponse | None
    policy_hash: str
    policy_name: str
    reception_stage: str | None
    sender_after: str | None
    recipient_after: str | None


class QueuedMessage(TypedDict):
    id: str
    queue: str
    sender: str
    recipient: str
    content: bytes
    meta: dict[str, str]
    created_at: datetime
    due_at: datetime
    attempts: int
    last_response: SmtpResponse | None


class DeliveryRequest(TypedDict):
    id: str
    queue: str
    attempt: int
    sender: str
    recipient: str
    content: bytes
    meta: dict[str, str]
    created_at: datetime
    queue_config: str
    released_at: datetime


class DeliveryOutcome(TypedDict):
    id: str
    queue: str
    attempt: int
    kind: OutcomeKind
    response: SmtpResponse
    site: str
    peer_name: str | None
    peer_address: str | None
    egress_pool: str | None
    egress_source: str | None
    completed_at: datetime


class SourceAddress(TypedDict):
    address: str
    server: str | None
    protocol: str | None


class LogRecord(TypedDict):
    type: RecordType
    id: str
    sender: str
    recipients: list[str]
    queue: str
    site: str
    size: int
    response: SmtpResponse
    peer_address: PeerAddress | None
    timestamp: datetime
    created: datetime
    num_attempts: int
    bounce_classification: str
    egress_pool: str | None
    egress_source: str | None
    delivery_protocol: str | None
    reception_protocol: str | None
    meta: dict[str, str]
    headers: dict[str, str]
    nodeid: str
    session_id: str | None
    source_address: SourceAddress | None
    feedback_report: str | None
    tls_cipher: str | None
    tls_protocol_version: str | None
    tls_peer_subject_name: list[str] | None
    provider_name: str | None


class QueueConfigOverride(TypedDict):
    target: str
    config: str
    updated_at: datetime
    updated_by: str
    reason: str | None


class AdminCommand(TypedDict):
    id: str
    action: AdminAction
    campaign: str | None
    tenant: str | None
    domain: str | None
    routing_domain: str | None
    queues: list[str]
    reason: str
    created_at: datetime
    expires_at: datetime
    rebind_meta: dict[str, str]
    created_by: str


class ReadyQueueState(TypedDict):
    name: str
    egress_source: str
    site: str
    node: str
    connection_count: int
    ready_count: int
    states: dict[str, datetime]
    path_config: dict[str, str]
    updated_at: datetime
    expires_at: datetime


class DeadLetter(TypedDict):
    source_topic: str
    source_partition: int
    source_offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    error_type: str
    service: str
    failed_at: datetime


# The TypedDict of each event, by schema name (what `encode` and `decode` call it).
EVENT_RECORDS: dict[str, type] = {
    "AdminCommand": AdminCommand,
    "DeadLetter": DeadLetter,
    "DeliveryOutcome": DeliveryOutcome,
    "DeliveryRequest": DeliveryRequest,
    "LogRecord": LogRecord,
    "MessageAccepted": MessageAccepted,
    "MessageSubmitted": MessageSubmitted,
    "QueueConfigOverride": QueueConfigOverride,
    "QueuedMessage": QueuedMessage,
    "ReadyQueueState": ReadyQueueState,
    "RoutingDecision": RoutingDecision,
}
