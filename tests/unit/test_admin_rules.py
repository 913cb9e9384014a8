"""Operator rules: KumoMTA's matching, expiry, the responses, rebind idempotence, moves."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relaystream.core.domain.admin_rules import (
    AdminAction,
    AdminRule,
    AdminRuleError,
    AdminRuleSet,
    bounced_response,
    ready_queue_suspended_response,
    rebound_meta,
    rule_applies_to_rebind,
    suspended_response,
)
from relaystream.core.events.codec import encode
from relaystream.core.kafka.admin_commands import command_of, decode_rule, rule_of
from relaystream.core.spool.entry import SpoolEntry
from relaystream.core.spool.snapshot import _merge
from relaystream.scheduling.state import SchedulerState


def rule(action: AdminAction = AdminAction.SUSPEND, **fields: object) -> AdminRule:
    base: dict[str, object] = {"id": "r", "reason": "why", "created_at": 1_000, "expires_at": 5_000}
    base.update(fields)
    return AdminRule(action=action, **base)


@pytest.mark.parametrize(
    ("fields", "queue", "expected"),
    [
        ({"domain": "example.com"}, "example.com", True),
        ({"domain": "example.com"}, "camp:ten@example.com!relay.net", True),
        ({"domain": "example.com"}, "example.net", False),
        ({"tenant": "acme"}, "acme@example.com", True),
        ({"tenant": "acme"}, "example.com", False),  # no tenant: a named tenant cannot match
        ({"campaign": "c", "tenant": "t"}, "c:t@example.com", True),
        ({"campaign": "c"}, "d:t@example.com", False),
        ({"routing_domain": "relay.net"}, "example.com!relay.net", True),
        ({"queues": ("a@example.com",)}, "a@example.com", True),
        ({"queues": ("a@example.com",), "domain": "example.com"}, "example.com", False),
        ({}, "anything", True),
    ],
)
def test_matching_follows_kumomta_criteria(
    fields: dict[str, object], queue: str, expected: bool
) -> None:
    assert rule(**fields).matches(queue) is expected


def test_expiry_and_the_set_picks_the_oldest_active_match() -> None:
    rules = AdminRuleSet()
    rules.put(rule(id="new", created_at=2_000, domain="example.com"))
    rules.put(rule(id="old", created_at=1_000, expires_at=3_000, domain="example.com"))
    assert rules.matching(AdminAction.SUSPEND, "example.com", 2_500).id == "old"
    assert rules.matching(AdminAction.SUSPEND, "example.com", 3_000).id == "new"
    assert rules.matching(AdminAction.SUSPEND, "example.com", 5_000) is None
    assert rules.matching(AdminAction.BOUNCE, "example.com", 2_500) is None
    rules.remove("new")
    assert [r.id for r in rules.all()] == ["old"]


def test_responses_are_kumomtas() -> None:
    assert suspended_response("m").to_single_line() == (
        "451 4.4.4 KumoMTA internal: scheduled queue is suspended: m"
    )
    assert bounced_response("b").to_single_line() == (
        "551 5.7.1 Administrator bounced with reason: b"
    )
    assert ready_queue_suspended_response("m").to_single_line() == (
        "451 4.4.4 KumoMTA internal: ready queue is suspended: m"
    )


def test_invalid_rules_are_refused() -> None:
    with pytest.raises(AdminRuleError):
        rule(AdminAction.REBIND)  # nothing to set
    with pytest.raises(AdminRuleError):
        rule(AdminAction.REBIND, rebind_meta={"tenant": '"x"'})
    with pytest.raises(AdminRuleError):
        rule(AdminAction.BOUNCE, rebind_meta={"queue": '"x"'})
    with pytest.raises(AdminRuleError):
        rule(expires_at=0)
    with pytest.raises(AdminRuleError):
        rule(AdminAction.SUSPEND_READY_Q)  # names no ready queue
    with pytest.raises(AdminRuleError):
        rule(AdminAction.SUSPEND_READY_Q, queues=("a->b@smtp_client",), domain="b")


def test_a_ready_queue_suspension_holds_its_one_ready_queue_only() -> None:
    rules = AdminRuleSet()
    name = "unspecified->mx.example.com@smtp_client"
    rules.put(rule(AdminAction.SUSPEND_READY_Q, queues=(name,)))
    assert rules.matching(AdminAction.SUSPEND_READY_Q, name, 2_000) is not None
    assert rules.matching(AdminAction.SUSPEND_READY_Q, "other->x@smtp_client", 2_000) is None
    # Not a scheduled queue suspension, and lifted at its expiry.
    assert rules.matching(AdminAction.SUSPEND, name, 2_000) is None
    assert rules.matching(AdminAction.SUSPEND_READY_Q, name, 5_000) is None


@given(st.dictionaries(st.sampled_from(["a", "queue", "routing_domain"]), st.text(), max_size=3),
       st.text(min_size=1))  # fmt: skip
def test_rebind_is_idempotent(meta: dict[str, str], target: str) -> None:
    encoded = {k: json.dumps(v) for k, v in meta.items()}
    rebind = rule(AdminAction.REBIND, rebind_meta={"routing_domain": json.dumps(target)})
    once = rebound_meta(encoded, rebind)
    after = encoded if once is None else once
    assert json.loads(after["routing_domain"]) == target
    assert rebound_meta(after, rebind) is None


def test_rebind_reaches_only_messages_received_before_it() -> None:
    rebind = rule(AdminAction.REBIND, rebind_meta={"queue": '"q"'})
    assert rule_applies_to_rebind(rebind, 1_000)
    assert not rule_applies_to_rebind(rebind, 1_001)


def test_command_round_trip() -> None:
    original = rule(AdminAction.REBIND, queues=("a", "b"), rebind_meta={"queue": '"q"'})
    assert rule_of(command_of(original)) == original
    suspension = rule(AdminAction.SUSPEND_READY_Q, queues=("s->site@smtp_client",))
    assert decode_rule(encode("AdminCommand", command_of(suspension))) == suspension


def entry(message_id: str, partition: int, offset: int, queue: str = "q") -> SpoolEntry:
    return SpoolEntry(message_id, queue, 0, 0, 0, partition, offset)


def test_old_copy_tombstone_does_not_remove_a_moved_message() -> None:
    state = SchedulerState(1_000)
    state.apply_queued(entry("m", 0, 5))
    state.apply_queued(entry("m", 1, 2, queue="moved"))  # the new copy, another partition
    state.apply_tombstone("m", 0, 6)  # the old copy's tombstone
    assert state.entry("m") is not None and state.entry("m").queue == "moved"
    state.apply_tombstone("m", 1, 3)
    assert state.entry("m") is None


def test_rebuild_merge_reports_messages_live_in_two_partitions() -> None:
    entries, conflicts = _merge(
        {0: {"a": entry("a", 0, 1), "m": entry("m", 0, 2)}, 1: {"m": entry("m", 1, 7)}}
    )
    assert sorted(entries) == ["a", "m"]
    assert [(e.partition, e.offset) for e in conflicts["m"]] == [(0, 2), (1, 7)]


def test_claimed_messages_are_not_released() -> None:
    state = SchedulerState(10_000)
    state.apply_queued(entry("m", 0, 1))
    assert [e.id for e in state.claim_waiting(["m", "unknown"], 0)] == ["m"]
    assert state.take_due(0, 10, lambda q: None) == []
    state.release_failed("m", 0)
    assert [e.id for e in state.take_due(0, 10, lambda q: None)] == ["m"]
