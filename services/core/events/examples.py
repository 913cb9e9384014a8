"""One realistic record of every event, for documentation, tests and benchmarks.

`example_records(content_size)` builds them fresh each call (callers may mutate them); the
message content is a plain RFC 5322 message padded to about `content_size` bytes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from . import records
from .meta import encode_meta

MESSAGE_ID = "8f2b6c0e4d1a49f7b3c5e6a7d8f90123"
RECEIVED_AT = datetime(2025, 3, 14, 9, 26, 53, 589000, tzinfo=UTC)


def example_content(size: int) -> bytes:
    head = (
        b"From: News <news@shop.example.com>\r\nTo: Ann <ann@example.org>\r\n"
        b"Subject: Spring offers\r\nMessage-ID: <1@shop.example.com>\r\n"
        b"Date: Fri, 14 Mar 2025 09:26:53 +0000\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n"
    return head + line * max(0, (size - len(head)) // len(line))


def _response(code: int, text: str) -> records.SmtpResponse:
    enhanced: records.EnhancedStatusCode = {"class": code // 100, "subject": 0, "detail": 0}
    return {"code": code, "enhanced_code": enhanced, "content": text, "command": ".\r\n"}


def example_records(content_size: int = 10_000) -> dict[str, dict[str, Any]]:
    """Event name -> one plausible record of it (every field set, nulls where typical)."""
    content = example_content(content_size)
    meta = encode_meta(
        {"tenant": "shop", "campaign": "spring", "received_from": "203.0.113.7:50514"}
    )
    queue = "spring:shop@example.org"
    later = RECEIVED_AT + timedelta(minutes=5)
    submitted: records.MessageSubmitted = {
        "submission_id": "order-4711",
        "sender": "news@shop.example.com",
        "recipients": ["ann@example.org", "bob@example.net"],
        "content": content,
        "meta": meta,
        "submitted_at": RECEIVED_AT,
    }
    accepted: records.MessageAccepted = {
        "id": MESSAGE_ID,
        "sender": "news@shop.example.com",
        "recipient": "ann@example.org",
        "content": content,
        "meta": meta,
        "reception_protocol": "ESMTP",
        "received_at": RECEIVED_AT,
        "transaction_id": "c0ffee00c0ffee00c0ffee00c0ffee00",
        "reception_policy": None,
    }
    decision: records.RoutingDecision = {
        "id": MESSAGE_ID,
        "decided_at": RECEIVED_AT,
        "received_at": RECEIVED_AT,
        "sender": "news@shop.example.com",
        "recipient": "ann@example.org",
        "reception_protocol": "ESMTP",
        "headers": content.split(b"\r\n\r\n", 1)[0].decode(),
        "meta_before": meta,
        "meta_after": {**meta, "queue": json.dumps(queue)},
        "outcome": "QUEUED",
        "queue": queue,
        "campaign": "spring",
        "tenant": "shop",
        "domain": "example.org",
        "routing_domain": None,
        "rejection": None,
        "policy_hash": "9" * 64,
        "policy_name": "policy.lua",
        "reception_stage": "ingest",
        "sender_after": None,
        "recipient_after": None,
    }
    queued: records.QueuedMessage = {
        "id": MESSAGE_ID,
        "queue": queue,
        "sender": "news@shop.example.com",
        "recipient": "ann@example.org",
        "content": content,
        "meta": meta,
        "created_at": RECEIVED_AT,
        "due_at": later,
        "attempts": 1,
        "last_response": _response(451, "4.0.0 try again later"),
    }
    request: records.DeliveryRequest = {
        "id": MESSAGE_ID,
        "queue": queue,
        "attempt": 1,
        "sender": "news@shop.example.com",
        "recipient": "ann@example.org",
        "content": content,
        "meta": meta,
        "created_at": RECEIVED_AT,
        "queue_config": json.dumps({"max_age": "7d", "retry_interval": "20m"}),
        "released_at": later,
    }
    outcome: records.DeliveryOutcome = {
        "id": MESSAGE_ID,
        "queue": queue,
        "attempt": 1,
        "kind": "DELIVERED",
        "response": _response(250, "2.0.0 OK queued as 4711"),
        "site": "mx1.example.org",
        "peer_name": "mx1.example.org",
        "peer_address": "192.0.2.25",
        "egress_pool": "default",
        "egress_source": "unspecified",
        "completed_at": later,
    }
    log: records.LogRecord = {
        "type": "Delivery",
        "id": MESSAGE_ID,
        "sender": "news@shop.example.com",
        "recipients": ["ann@example.org"],
        "queue": queue,
        "site": "mx1.example.org",
        "size": len(content),
        "response": _response(250, "2.0.0 OK queued as 4711"),
        "peer_address": {"name": "mx1.example.org", "addr": "192.0.2.25"},
        "timestamp": later,
        "created": RECEIVED_AT,
        "num_attempts": 1,
        "bounce_classification": "Uncategorized",
        "egress_pool": "default",
        "egress_source": "unspecified",
        "delivery_protocol": "ESMTP",
        "reception_protocol": "ESMTP",
        "meta": meta,
        "headers": {"Subject": json.dumps("Spring offers")},
        "nodeid": "00000000-0000-4000-8000-000000000001",
        "session_id": "6f1c0f6e-4a53-4d5e-9b1e-1f1c7a9a2b10",
        "source_address": {"address": "198.51.100.4:53210", "server": None, "protocol": None},
        "feedback_report": None,
        "tls_cipher": "TLS_AES_256_GCM_SHA384",
        "tls_protocol_version": "TLSv1.3",
        "tls_peer_subject_name": ["CN=mx1.example.org"],
        "provider_name": None,
    }
    override: records.QueueConfigOverride = {
        "target": "example.org",
        "config": json.dumps({"max_connection_rate": "10/s"}),
        "updated_at": RECEIVED_AT,
        "updated_by": "ops@shop.example.com",
        "reason": "receiver asked us to slow down",
    }
    admin: records.AdminCommand = {
        "id": "suspend-example-org",
        "action": "SUSPEND",
        "campaign": None,
        "tenant": None,
        "domain": "example.org",
        "routing_domain": None,
        "queues": [],
        "reason": "blocklisted, investigating",
        "created_at": RECEIVED_AT,
        "expires_at": RECEIVED_AT + timedelta(hours=2),
        "rebind_meta": {},
        "created_by": "ops@shop.example.com",
    }
    ready_queue: records.ReadyQueueState = {
        "name": "unspecified->example.org@smtp_client",
        "egress_source": "unspecified",
        "site": "example.org",
        "node": "delivery-0",
        "connection_count": 3,
        "ready_count": 7,
        "states": {"connection_limited": RECEIVED_AT},
        "path_config": {"connection_limit": "3"},
        "updated_at": later,
        "expires_at": later + timedelta(seconds=90),
    }
    dead: records.DeadLetter = {
        "source_topic": "accepted",
        "source_partition": 3,
        "source_offset": 1234,
        "key": MESSAGE_ID.encode(),
        "value": b"\x00not avro",
        "reason": "bad marker 006e, expected c301",
        "error_type": "DecodeError",
        "service": "routing",
        "failed_at": later,
    }
    examples: dict[str, Any] = {
        "MessageSubmitted": submitted,
        "MessageAccepted": accepted,
        "RoutingDecision": decision,
        "QueuedMessage": queued,
        "DeliveryRequest": request,
        "DeliveryOutcome": outcome,
        "LogRecord": log,
        "QueueConfigOverride": override,
        "AdminCommand": admin,
        "DeadLetter": dead,
        "ReadyQueueState": ready_queue,
    }
    return examples
