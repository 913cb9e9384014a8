"""Prometheus metrics of the ingest service, in the process's default registry (/metrics).

Labels stay low-cardinality: protocols, results and fixed rejection reasons; never addresses,
peers or message ids.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from ..core.runtime.kumo_metrics import (
    CONNECTION_COUNT,
    ESMTP_LISTENER,
    HTTP_LISTENER,
    KumoCounter,
)

SMTP_CONNECTIONS = Counter(
    "relaystream_ingest_smtp_connections",
    "SMTP connections by result: served, or refused because the listener was full",
    ["result"],
)
# KumoMTA's names: open SMTP sessions under service esmtp_listener; accepted messages (one
# per recipient, acknowledged by Kafka and then to the client) by listener service.
SMTP_SESSIONS = CONNECTION_COUNT.labels(ESMTP_LISTENER)
MESSAGES_RECEIVED = KumoCounter(
    "total_messages_received", "total number of messages ever received", ("service",)
)
# KumoMTA's service per reception protocol (Kafka submissions: relaystream's own).
RECEIVED_SERVICE = {"ESMTP": ESMTP_LISTENER, "HTTP": HTTP_LISTENER, "Kafka": "kafka_submit"}


def note_received(protocol: str, count: int) -> None:
    MESSAGES_RECEIVED.inc(RECEIVED_SERVICE[protocol], amount=count)


MESSAGES_REJECTED = Counter(
    "relaystream_ingest_messages_rejected",
    "Recipients, transactions or events refused, by protocol and reason",
    ["protocol", "reason"],
)
KAFKA_ACK_SECONDS = Histogram(
    "relaystream_ingest_kafka_ack_seconds",
    "From a reception's arrival at the acceptor until Kafka acknowledged it (or it failed)",
    ["result"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
KAFKA_WRITES = Counter(
    "relaystream_ingest_kafka_writes",
    "Atomic writes of accepted messages: kind batch (one record batch) or transaction (a "
    "reception too large for one), result committed or failed",
    ["kind", "result"],
)
