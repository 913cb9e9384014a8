"""`relaystream audit why` on a real broker: one message's reception, decision, overrides and
attempts, from events the services' own code builds and their producer publishes."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from relaystream.cli.main import main
from relaystream.core.domain.log_record import LogRecord, PeerAddress, RecordType
from relaystream.core.domain.smtp_reply import SmtpResponse
from relaystream.core.events.codec import encode
from relaystream.core.events.meta import encode_meta
from relaystream.core.events.records import DeliveryRequest, MessageAccepted
from relaystream.core.kafka.admin import ensure_topics
from relaystream.core.kafka.producer import EventProducer
from relaystream.core.kafka.queue_config_store import publish_override
from relaystream.core.kafka.topics import TopicSettings, declare_topics, partition_for_queue
from relaystream.core.policy import policy_from_file
from relaystream.routing.decision import decide

POLICY_HASH = "ab" * 32
QUEUE = "shop@example.org"


def accepted_at_ingest(message_id: str, received_at: datetime) -> MessageAccepted:
    """An accepted message whose reception handler ran at ingest and set the tenant."""
    return {
        "id": message_id,
        "sender": "sender@origin.example",
        "recipient": "ann@example.org",
        "content": b"From: sender@origin.example\r\nSubject: hi\r\n\r\nbody\r\n",
        "meta": encode_meta({"reception_protocol": "ESMTP", "tenant": "shop"}),
        "reception_protocol": "ESMTP",
        "received_at": received_at,
        "transaction_id": uuid.uuid4().hex,
        "reception_policy": {
            "policy_hash": POLICY_HASH,
            "policy_name": "policy.lua",
            "meta_before": encode_meta({"reception_protocol": "ESMTP", "customer": "shop"}),
            "sender_before": None,
            "recipient_before": None,
            "headers_before": None,
            "rejection": None,
            "failure": None,
        },
    }


def request(message_id: str, attempt: int, released_at: datetime, pool: str) -> DeliveryRequest:
    return {
        "id": message_id,
        "queue": QUEUE,
        "attempt": attempt,
        "sender": "sender@origin.example",
        "recipient": "ann@example.org",
        "content": b"body",
        "meta": {},
        "created_at": released_at,
        "queue_config": json.dumps({"retry_interval": "5m", "egress_pool": pool}),
        "released_at": released_at,
    }


def attempt_log(
    message_id: str, kind: RecordType, attempt: int, at: datetime, reply: str, pool: str
) -> dict[str, Any]:
    return LogRecord(
        type=kind,
        id=message_id,
        sender="sender@origin.example",
        recipients=("ann@example.org",),
        queue=QUEUE,
        response=SmtpResponse.parse(reply, "RCPT TO"),
        timestamp=at,
        created=at,
        site="mx.example.org",
        peer_address=PeerAddress("mx.example.org", "127.0.0.1"),
        num_attempts=attempt,
        egress_pool=pool,
        egress_source="source-1",
        delivery_protocol="ESMTP",
    ).to_avro()


async def publish_history(bootstrap: str, prefix: str, policy_path: Path) -> str:
    """A message decided under a domain override, failed once, delivered on the retry after a
    queue override changed its egress pool. Returns its id."""
    topics = declare_topics(TopicSettings.local(prefix))
    await ensure_topics(
        bootstrap,
        [topics.accepted, topics.decisions, topics.log, topics.attempts, topics.queue_config],
    )
    # Ingest stamps the reception and its record together; `why` reads `accepted` around it.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    message_id = uuid.uuid4().hex
    await publish_override(
        bootstrap,
        topics.queue_config.name,
        "example.org",
        {"retry_interval": "5m"},
        updated_by="ops",
        reason="greylisting",
        updated_at=start - timedelta(minutes=5),
    )
    await publish_override(
        bootstrap,
        topics.queue_config.name,
        QUEUE,
        {"egress_pool": "pool-b"},
        updated_by="ops",
        reason="move off pool-a",
        updated_at=start + timedelta(minutes=5),
    )
    accepted = accepted_at_ingest(message_id, start)
    result = decide(accepted, policy_from_file(policy_path), decided_at=start)
    attempts_partition = partition_for_queue(QUEUE, topics.attempts.partitions)
    async with EventProducer(bootstrap, client_id="test-audit-why") as producer:
        await producer.send(
            topics.accepted.name, encode("MessageAccepted", accepted), key=message_id
        )
        await producer.send(
            topics.decisions.name, encode("RoutingDecision", result.decision), key=message_id
        )
        await producer.send(topics.log.name, encode("LogRecord", result.log), key=message_id)
        for attempt, minutes, kind, reply, pool in (
            (0, 1, RecordType.TRANSIENT_FAILURE, "451 4.7.1 greylisted, retry later", "pool-a"),
            (1, 6, RecordType.DELIVERY, "250 2.0.0 ok", "pool-b"),
        ):
            at = start + timedelta(minutes=minutes)
            await producer.send(
                topics.attempts.name,
                encode("DeliveryRequest", request(message_id, attempt, at, pool)),
                key=message_id,
                partition=attempts_partition,
            )
            log = attempt_log(message_id, kind, attempt, at + timedelta(seconds=2), reply, pool)
            await producer.send(topics.log.name, encode("LogRecord", log), key=message_id)
    return message_id


def run_cli(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    code = exit_info.value.code
    assert isinstance(code, int)
    return code, out, err


async def test_why_shows_the_decision_overrides_and_every_attempt(
    kafka_bootstrap: str,
    topic_prefix: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    policy = tmp_path / "policy.lua"
    policy.write_text("kumo.on('smtp_server_message_received', function(msg) end)\n")
    message_id = await publish_history(kafka_bootstrap, topic_prefix, policy)
    target = ["--bootstrap", kafka_bootstrap, "--prefix", topic_prefix]

    def why(*args: str) -> tuple[int, str, str]:
        return run_cli(capsys, ["audit", "why", *args, *target])

    code, out, _ = await asyncio.to_thread(why, message_id, "--json")
    assert code == 0
    answer = json.loads(out)
    reception_policy = answer["reception"]["policy"]
    assert (reception_policy["stage"], reception_policy["name"], reception_policy["hash"]) == (
        "ingest",
        "policy.lua",
        POLICY_HASH,
    )
    assert reception_policy["inputs"]["meta"]["customer"] == "shop"
    assert answer["reception"]["transaction_id"] is not None  # from the accepted event
    decision = answer["decision"]
    assert (decision["outcome"], decision["queue"], decision["reception_stage"]) == (
        "QUEUED",
        QUEUE,
        "ingest",
    )
    assert list(decision["overrides_in_force"]) == ["example.org"]
    first, second = answer["attempts"]
    assert (first["number"], first["outcome"], first["egress_pool"]) == (
        1,
        "TransientFailure",
        "pool-a",
    )
    assert first["response"].startswith("451 4.7.1 greylisted")
    assert first["queue_config"]["egress_pool"] == "pool-a"
    assert list(first["overrides_in_force"]) == ["example.org"]
    assert (second["number"], second["outcome"], second["egress_pool"]) == (
        2,
        "Delivery",
        "pool-b",
    )
    assert second["overrides_in_force"][QUEUE]["config"] == {"egress_pool": "pool-b"}
    assert list(second["overrides_in_force"]) == ["example.org", QUEUE]
    assert answer["final"]["disposition"] == "delivered"

    code, out, _ = await asyncio.to_thread(why, message_id, "--recipient", "ann@EXAMPLE.org")
    assert code == 0
    assert "attempt 1 TransientFailure: 451 4.7.1 greylisted" in out
    assert "attempt 2 Delivery: 250 2.0.0 ok" in out
    assert [line for line in out.splitlines() if line.startswith("final: ")] == [
        f"final: delivered at {second['completed_at']}: 250 2.0.0 ok"
    ]

    for unknown in ([uuid.uuid4().hex], [message_id, "--recipient", "bob@example.org"]):
        code, out, err = await asyncio.to_thread(why, *unknown)
        assert code == 1
        assert out == ""
        assert "not found" in err
