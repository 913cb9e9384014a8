"""The routing rule (core.policy.routing_rule): policy result -> queue, discard or rejection,
and the three callers that must agree on it (routing service, audit verify, `route`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relaystream.cli.route import route
from relaystream.core.audit.verify import UnverifiableDecision, recompute
from relaystream.core.domain.queue_name import QueueName
from relaystream.core.events.meta import decode_meta, encode_meta
from relaystream.core.events.records import MessageAccepted
from relaystream.core.policy import JsonValue, Policy, PolicyMessage, policy_from_source
from relaystream.core.policy.routing_rule import (
    RecipientDomainError,
    RefusedMessage,
    RoutedMessage,
    recipient_domain,
    route_message,
)
from relaystream.routing.decision import InvalidAccepted, decide

RECEIVED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

# One action per outcome, chosen by the recipient's local part; anyone else is queued.
POLICY = """\
local actions = {
  drop = function(msg) msg:set_meta('queue', 'null') end,
  reject = function() kumo.reject(552, '5.3.4 too big for us') end,
  boom = function() error('policy bug') end,
  badqueue = function(msg) msg:set_meta('queue', 42) end,
}
kumo.on('smtp_server_message_received', function(msg)
  local action = actions[msg:recipient().user] or function() msg:set_meta('campaign', 'spring') end
  action(msg)
end)
"""


@pytest.fixture(scope="module")
def policy() -> Policy:
    return policy_from_source(POLICY, "rule.lua")


def policy_message(recipient: str, meta: dict[str, JsonValue] | None = None) -> PolicyMessage:
    given_meta = {"tenant": "acme"} if meta is None else meta
    return PolicyMessage("id-1", "sender@origin.example", recipient, given_meta)


def test_accepted_message_joins_the_queue_its_meta_and_domain_name(policy: Policy) -> None:
    routed = route_message(policy, "ESMTP", policy_message("rcpt@Example.COM"))
    assert isinstance(routed, RoutedMessage)
    assert routed.queue == "spring:acme@example.com"
    assert not routed.discarded
    assert routed.meta_after == {"tenant": "acme", "campaign": "spring"}
    assert routed.encoded_meta_after == {"tenant": '"acme"', "campaign": '"spring"'}


def test_the_null_queue_discards(policy: Policy) -> None:
    routed = route_message(policy, "ESMTP", policy_message("drop@example.com"))
    assert isinstance(routed, RoutedMessage)
    assert (routed.queue, routed.discarded) == ("null", True)


def test_kumo_reject_refuses_with_its_response_and_no_failure(policy: Policy) -> None:
    routed = route_message(policy, "ESMTP", policy_message("reject@example.com"))
    assert isinstance(routed, RefusedMessage)
    assert routed.rejection.response == "552 5.3.4 too big for us"
    assert routed.failure is None
    assert routed.meta_error is None
    assert routed.meta_after == {"tenant": "acme"}


def test_a_failing_policy_refuses_with_technical_difficulties(policy: Policy) -> None:
    routed = route_message(policy, "ESMTP", policy_message("boom@example.com"))
    assert isinstance(routed, RefusedMessage)
    assert routed.rejection.response == "451 4.3.0 technical difficulties"
    assert routed.failure is not None
    assert routed.failure.reason == "error"
    assert "policy bug" in routed.failure.message
    assert routed.meta_error is None
    assert routed.meta_after == {"tenant": "acme"}


# NaN cannot come from set_meta (the sandbox refuses it) but can arrive in the meta before:
# JSON decoding accepts the text NaN, JSON encoding for the events does not.
@pytest.mark.parametrize(
    ("user", "meta", "key"),
    [("badqueue", {}, "queue"), ("rcpt", {"score": float("nan")}, "score")],
)
def test_meta_that_cannot_name_a_queue_or_be_recorded_is_a_policy_failure(
    policy: Policy, user: str, meta: dict[str, JsonValue], key: str
) -> None:
    routed = route_message(policy, "ESMTP", policy_message(f"{user}@example.com", meta))
    assert isinstance(routed, RefusedMessage)
    assert routed.rejection.response == "451 4.3.0 technical difficulties"
    assert routed.failure is not None
    assert routed.failure.message.startswith("rule.lua: ")
    assert routed.meta_error is not None and repr(key) in routed.meta_error
    # The policy's own meta, so a caller can show what it set.
    assert key in routed.meta_after


@pytest.mark.parametrize("recipient", ["no-domain", "@example.com", "user@", "user@bad..domain"])
def test_a_recipient_without_a_valid_domain_is_refused_before_the_policy_runs(
    recipient: str,
) -> None:
    # This policy fails on every message: the domain error comes first.
    failing = policy_from_source(
        "kumo.on('smtp_server_message_received', function(msg) error('ran') end)", "f.lua"
    )
    with pytest.raises(RecipientDomainError):
        route_message(failing, "ESMTP", policy_message(recipient))


def test_recipient_domain_is_after_the_last_at_as_written() -> None:
    assert recipient_domain('"a@b"@Bücher.example') == "Bücher.example"
    assert recipient_domain("user@[IPv6:::1]") == "[IPv6:::1]"


@given(
    tenant=st.none() | st.text(st.characters(codec="ascii", exclude_characters="@:!"), max_size=8),
    domain=st.sampled_from(["example.com", "Example.ORG", "bücher.example", "[10.0.0.1]"]),
)
def test_the_queue_is_what_queue_name_builds_from_domain_and_meta(
    tenant: str | None, domain: str
) -> None:
    passthrough = policy_from_source(
        "kumo.on('smtp_server_message_received', function(msg) end)", "p.lua"
    )
    meta: dict[str, JsonValue] = {"tenant": tenant}
    routed = route_message(passthrough, "ESMTP", policy_message(f"u@{domain}", meta))
    assert isinstance(routed, RoutedMessage)
    assert routed.queue == QueueName.for_message(domain, meta)


# -- the callers agree -----------------------------------------------------------------------


def accepted(recipient: str, meta: dict[str, str] | None = None) -> MessageAccepted:
    return {
        "id": "0123456789abcdef0123456789abcdef",
        "sender": "sender@origin.example",
        "recipient": recipient,
        "content": b"Subject: hi\r\n\r\nbody\r\n",
        "meta": encode_meta({"tenant": "acme"}) if meta is None else meta,
        "reception_protocol": "ESMTP",
        "received_at": RECEIVED,
        "transaction_id": None,
    }


@pytest.mark.parametrize(
    ("user", "meta", "outcome", "cli_outcome"),
    [
        ("rcpt", None, "QUEUED", "accepted"),
        ("drop", None, "DISCARDED", "accepted"),
        ("reject", None, "REJECTED", "rejected"),
        ("boom", None, "REJECTED", "failed"),
        ("badqueue", None, "REJECTED", "failed"),
        ("rcpt", {"score": "NaN"}, "REJECTED", "failed"),
    ],
)
def test_service_audit_and_cli_decide_alike(
    policy: Policy, user: str, meta: dict[str, str] | None, outcome: str, cli_outcome: str
) -> None:
    record = accepted(f"{user}@example.com", meta)
    result = decide(record, policy, decided_at=RECEIVED)
    recorded: dict[str, Any] = dict(result.decision)
    replayed = recompute(policy, recorded)
    meta_before = decode_meta(record["meta"])
    report = route(policy, "ESMTP", policy_message(record["recipient"], meta_before))
    assert result.outcome == replayed.outcome == outcome
    assert report["outcome"] == cli_outcome
    assert result.decision["queue"] == replayed.queue
    if outcome == "QUEUED":
        assert report["queue"]["name"] == replayed.queue == "spring:acme@example.com"


def test_each_caller_reports_a_bad_recipient_in_its_own_terms(policy: Policy) -> None:
    with pytest.raises(InvalidAccepted):
        decide(accepted("@example.com"), policy, decided_at=RECEIVED)
    good = decide(accepted("rcpt@example.com"), policy, decided_at=RECEIVED)
    with pytest.raises(UnverifiableDecision):
        recompute(policy, {**good.decision, "recipient": "@example.com"})
