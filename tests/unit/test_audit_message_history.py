"""`audit why`: the overrides it says were in force, the queues they apply to, its answer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from relaystream.core.audit.message_history import MessageHistory, overrides_in_force, timeline
from relaystream.core.domain.queue_name import override_targets
from relaystream.core.events.examples import example_records

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Change:
    target: str
    at: datetime
    config: Mapping[str, Any] | None
    updated_by: str | None = "ops"
    reason: str | None = None


def test_override_targets_are_the_domain_then_the_exact_queue() -> None:
    assert override_targets("spring:shop@example.org!relay.example") == (
        "example.org",
        "spring:shop@example.org!relay.example",
    )
    assert override_targets("example.org") == ("example.org",)


def test_overrides_in_force_follow_sets_and_removals_up_to_the_time() -> None:
    queue = "shop@example.org"
    changes = [
        Change(queue, T0, {"egress_pool": "a"}),
        Change("example.org", T0 + timedelta(minutes=1), {"retry_interval": "5m"}),
        Change("other.example", T0, {"egress_pool": "x"}),
        Change(queue, T0 + timedelta(minutes=2), None),
        Change(queue, T0 + timedelta(minutes=3), {"egress_pool": "b"}),
    ]

    def pools(minutes: int) -> dict[str, Any]:
        found = overrides_in_force(changes, queue, T0 + timedelta(minutes=minutes))
        return {target: override["config"] for target, override in found.items()}

    assert overrides_in_force(changes, queue, T0 - timedelta(seconds=1)) == {}
    assert pools(0) == {queue: {"egress_pool": "a"}}
    # The domain's first, as the scheduler merges them (the queue's wins).
    assert list(pools(1)) == ["example.org", queue]
    assert pools(2) == {"example.org": {"retry_interval": "5m"}}
    assert pools(3)[queue] == {"egress_pool": "b"}


def test_a_rejected_decision_is_the_final_disposition_and_names_the_handlers_changes() -> None:
    decision = {
        **example_records(1)["RoutingDecision"],
        "outcome": "REJECTED",
        "queue": None,
        "rejection": {
            "code": 550,
            "enhanced_code": {"class": 5, "subject": 7, "detail": 1},
            "content": "not from here",
            "command": None,
        },
        "recipient_after": "bob@example.org",
    }
    history = MessageHistory(decision["id"], decision=decision)
    answer = history.to_json()
    assert answer["final"]["disposition"] == "rejected"
    assert answer["final"]["response"] == "550 5.7.1 not from here"
    assert answer["attempts"] == []
    lines = timeline(answer)
    routing = next(n for n, line in enumerate(lines) if "routing REJECTED" in line)
    assert lines[routing].endswith(
        "routing REJECTED -> 550 5.7.1 not from here"
        "  (reception stage ingest; policy policy.lua sha256:9999999999999999)"
    )
    assert lines[routing + 1].strip() == "the handler set the recipient <bob@example.org>"
    decided_at = answer["decision"]["decided_at"]
    assert lines[-2] == f"final: rejected at {decided_at}: 550 5.7.1 not from here"
    assert history.recipients() == {"ann@example.org", "bob@example.org"}
