"""The routing decision of one message, without Kafka: policy result -> events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from relaystream.core.audit.verify import compare, recompute
from relaystream.core.domain.bounce_class import BounceClassifier
from relaystream.core.domain.bounce_rules_builtin import BUILTIN_RULE_SETS
from relaystream.core.domain.log_writer import LogWriter
from relaystream.core.events.codec import decode, encode
from relaystream.core.events.meta import encode_meta
from relaystream.core.events.records import MessageAccepted
from relaystream.core.policy import Policy, policy_from_source
from relaystream.ingest.reception import ReceptionPolicy, Refused
from relaystream.routing.decision import InvalidAccepted, decide, header_block

RECEIVED = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
DECIDED = RECEIVED + timedelta(seconds=2)

POLICY = """\
kumo.on('smtp_server_message_received', function(msg)
  local user = msg:recipient().user
  if user == 'drop' then msg:set_meta('queue', 'null')
  elseif user == 'reject' then kumo.reject(552, '5.3.4 too big for us')
  elseif user == 'boom' then error('policy bug')
  elseif user == 'badqueue' then msg:set_meta('queue', 42)
  else
    msg:set_meta('campaign', 'spring')
    msg:set_meta('routing_domain', 'smart.example')
  end
end)
"""


def message(recipient: str) -> MessageAccepted:
    return {
        "id": "0123456789abcdef0123456789abcdef",
        "sender": "sender@origin.example",
        "recipient": recipient,
        "content": b"Subject: hi\r\nX-Test: 1\r\n\r\nbody\r\n",
        "meta": encode_meta({"tenant": "acme"}),
        "reception_protocol": "ESMTP",
        "received_at": RECEIVED,
        "transaction_id": None,
        "reception_policy": None,
    }


@pytest.fixture(scope="module")
def policy() -> Policy:
    return policy_from_source(POLICY, "policy.lua")


def test_queued_message_keeps_tenant_and_is_due_at_reception(policy: Policy) -> None:
    result = decide(message("rcpt@Example.COM"), policy, decided_at=DECIDED)
    assert result.outcome == "QUEUED"
    assert result.queued is not None
    assert result.queued["queue"] == "spring:acme@example.com!smart.example"
    assert result.queued["due_at"] == result.queued["created_at"] == RECEIVED
    assert result.decision["tenant"] == "acme"
    assert result.decision["routing_domain"] == "smart.example"
    assert result.decision["decided_at"] == DECIDED
    assert result.policy_failure is None
    # Every event the decision yields is valid for its schema.
    for name, event in (
        ("RoutingDecision", result.decision),
        ("QueuedMessage", result.queued),
        ("LogRecord", result.log),
    ):
        assert decode(encode(name, event))[0] == name


def test_rerunning_a_decision_gives_identical_spool_and_log_records(policy: Policy) -> None:
    first = decide(message("rcpt@example.com"), policy, decided_at=DECIDED)
    again = decide(message("rcpt@example.com"), policy, decided_at=DECIDED + timedelta(hours=1))
    assert first.queued is not None and again.queued is not None
    assert encode("QueuedMessage", first.queued) == encode("QueuedMessage", again.queued)
    assert encode("LogRecord", first.log) == encode("LogRecord", again.log)


def test_null_queue_is_discarded_with_a_reception_record(policy: Policy) -> None:
    result = decide(message("drop@example.com"), policy, decided_at=DECIDED)
    assert (result.outcome, result.queued) == ("DISCARDED", None)
    assert (result.log["type"], result.log["queue"]) == ("Reception", "null")


def test_kumo_reject_is_a_rejection_with_its_code(policy: Policy) -> None:
    result = decide(message("reject@example.com"), policy, decided_at=DECIDED)
    assert result.outcome == "REJECTED"
    assert result.decision["rejection"] == {
        "code": 552,
        "enhanced_code": {"class": 5, "subject": 3, "detail": 4},
        "content": "too big for us",
        "command": None,
    }
    assert result.log["type"] == "Rejection"
    assert result.log["queue"] == "acme@example.com"  # the queue it would have joined
    assert result.policy_failure is None


@pytest.mark.parametrize("user", ["boom", "badqueue"])
def test_a_failing_policy_rejects_transiently_and_says_why(policy: Policy, user: str) -> None:
    result = decide(message(f"{user}@example.com"), policy, decided_at=DECIDED)
    assert result.outcome == "REJECTED"
    assert result.decision["rejection"] is not None
    assert result.decision["rejection"]["code"] == 451
    assert result.policy_failure is not None


@pytest.mark.parametrize(
    "changes",
    [
        {"reception_protocol": "UUCP"},
        {"recipient": "no-domain"},
        {"recipient": "user@bad..domain"},
        {"meta": {"tenant": "not json"}},
    ],
)
def test_unroutable_records_are_invalid(policy: Policy, changes: dict[str, Any]) -> None:
    record = message("rcpt@example.com")
    record.update(changes)
    with pytest.raises(InvalidAccepted):
        decide(record, policy, decided_at=DECIDED)


def test_header_block_stops_at_the_first_empty_line() -> None:
    assert header_block(b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore") == "A: 1\r\nB: 2\r\n"
    assert header_block(b"A: 1\nB: 2\n\nbody") == "A: 1\nB: 2\n"
    assert header_block(b"A: only headers") == "A: only headers"


def from_client(recipient: str) -> MessageAccepted:
    """As ingest's SMTP listener writes it: the client's address and EHLO name in the meta."""
    accepted = message(recipient)
    connection = {"received_from": "192.0.2.9:40123", "ehlo_domain": "client.example"}
    return {**accepted, "meta": {**accepted["meta"], **encode_meta(connection)}}


def test_reception_and_rejection_records_name_the_client_as_their_peer(policy: Policy) -> None:
    peer = {"name": "client.example", "addr": "192.0.2.9:40123"}
    received = decide(from_client("rcpt@example.com"), policy, decided_at=DECIDED)
    rejected = decide(from_client("reject@example.com"), policy, decided_at=DECIDED)
    assert received.log["peer_address"] == rejected.log["peer_address"] == peer
    # A Kafka submission has no client connection.
    assert (
        decide(message("rcpt@example.com"), policy, decided_at=DECIDED).log["peer_address"] is None
    )


def test_the_log_writer_stamps_node_id_and_classifies_the_rejection(policy: Policy) -> None:
    writer = LogWriter(
        "557f3ad4-2c8c-11ee-976e-782d7e12e173", BounceClassifier.compile(BUILTIN_RULE_SETS)
    )
    rejected = decide(message("reject@example.com"), policy, decided_at=DECIDED, log_writer=writer)
    received = decide(message("rcpt@example.com"), policy, decided_at=DECIDED, log_writer=writer)
    assert rejected.log["nodeid"] == received.log["nodeid"] == writer.nodeid
    assert rejected.log["bounce_classification"] == "QuotaIssues"  # 552 5.3.4 too big
    assert received.log["bounce_classification"] == "Uncategorized"


# A policy that must not run in routing: ingest already ran the handler.
NOT_AGAIN = policy_from_source(
    "kumo.on('smtp_server_message_received', function() error('ran twice') end)\n", "other.lua"
)


def received_at_ingest(policy: Policy, recipient: str) -> MessageAccepted | Refused:
    [result] = ReceptionPolicy(policy).receive_now("ESMTP", [message(recipient)])
    return result


def test_a_message_whose_handler_ran_at_ingest_is_queued_without_running_it_again(
    policy: Policy,
) -> None:
    accepted = received_at_ingest(policy, "rcpt@example.com")
    assert not isinstance(accepted, Refused)
    result = decide(accepted, NOT_AGAIN, decided_at=DECIDED)
    assert result.outcome == "QUEUED"
    assert result.queued is not None
    assert result.queued["queue"] == "spring:acme@example.com!smart.example"
    decision = result.decision
    # The decision names the policy ingest ran and its inputs, so the audit can replay it.
    assert decision["reception_stage"] == "ingest"
    assert (decision["policy_name"], decision["policy_hash"]) == ("policy.lua", policy.content_hash)
    assert decision["meta_before"] == encode_meta({"tenant": "acme"})
    assert compare(decision, recompute(policy, decision)) is None
    assert compare(decision, recompute(NOT_AGAIN, decision)) is not None
    assert decode(encode("RoutingDecision", decision))[1] == decision


def test_a_submission_refused_at_ingest_is_recorded_as_a_rejection(policy: Policy) -> None:
    refused = received_at_ingest(policy, "reject@example.com")
    assert isinstance(refused, Refused)
    marked = ReceptionPolicy(policy).refused_record(message("reject@example.com"), refused)
    result = decide(marked, NOT_AGAIN, decided_at=DECIDED)
    assert (result.outcome, result.queued, result.policy_failure) == ("REJECTED", None, None)
    assert result.log["type"] == "Rejection"
    assert result.log["response"]["code"] == 552
    failed = received_at_ingest(policy, "boom@example.com")
    assert isinstance(failed, Refused) and failed.failure is not None
    marked = ReceptionPolicy(policy).refused_record(message("boom@example.com"), failed)
    result = decide(marked, NOT_AGAIN, decided_at=DECIDED)
    assert result.log["response"]["code"] == 451
    assert result.policy_failure is not None and "policy bug" in result.policy_failure.message


def test_a_message_the_handler_makes_too_large_is_refused_at_ingest() -> None:
    growing = policy_from_source(
        "kumo.on('smtp_server_message_received', function(msg)\n"
        "  msg:append_header('X-Padding', string.rep('x', 200))\n"
        "end)\n",
        "grow.lua",
    )
    [kept] = ReceptionPolicy(growing, 1000).receive_now("ESMTP", [message("a@example.com")])
    assert not isinstance(kept, Refused) and b"X-Padding" in kept["content"]
    # The decision records the header block the handler saw, so the audit replays its input.
    decision = decide(kept, NOT_AGAIN, decided_at=DECIDED).decision
    assert "X-Padding" not in decision["headers"] and "X-Test: 1" in decision["headers"]
    assert compare(decision, recompute(growing, decision)) is None
    [refused] = ReceptionPolicy(growing, 100).receive_now("ESMTP", [message("a@example.com")])
    assert isinstance(refused, Refused) and refused.reply.startswith("552 5.3.4")


async def test_smtp_stops_at_the_first_refusal_and_a_bug_is_a_451_not_a_500(
    policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    reception = ReceptionPolicy(policy)
    recipients = ["reject@example.com", "rcpt@example.com", "boom@example.com"]
    # SMTP: one refusal refuses the transaction, so the handler is not run for the rest.
    results = await reception.receive(
        "ESMTP", [message(r) for r in recipients], stop_at_refusal=True
    )
    assert len(results) == 1 and isinstance(results[0], Refused)
    # Otherwise (HTTP) each recipient is decided alone.
    results = await reception.receive("ESMTP", [message(r) for r in recipients])
    assert [isinstance(r, Refused) for r in results] == [True, False, True]

    def a_bug(*args: object) -> object:
        raise RuntimeError("a bug")

    monkeypatch.setattr(policy, "on_message_received", a_bug)
    [refused] = reception.receive_now("ESMTP", [message("rcpt@example.com")])
    assert isinstance(refused, Refused)
    assert refused.reply.startswith("451 4.3.0")
