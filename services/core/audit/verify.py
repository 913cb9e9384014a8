"""Re-running a policy on recorded decisions: would it decide the same today?

Each RoutingDecision carries the reception handler's inputs (sender, recipient, reception
protocol, headers, meta before), the policy that ran it (its hash and name) and what came out
(outcome, queue, meta after, the envelope the handler set, rejection). Ingest runs the handler
before it answers the client (`reception_stage` "ingest": the inputs and policy are the ones
ingest recorded on the message, the meta before holding the session's conn_meta); older
decisions were made by routing. `recompute` feeds the inputs to a policy the way ingest does;
`compare` says what differs. A policy with the recorded hash must reproduce every decision:
that is the auditor's proof that the record explains the routing, and a difference under the
same hash means the policy depends on something outside its inputs (the message body, which
the decision does not record, is one: the replay gives the handler the header block with an
empty body).

Messages that ingest refused during the SMTP dialogue or the HTTP request were never accepted
and have no decision; a refused `submit` message has one (REJECTED).

The routing rule (queue, discard, rejection) is `core.policy.routing_rule`, the one the
routing service applies; a recipient without a valid domain, which the routing service
dead-letters, is unverifiable here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..events.meta import MetaError, decode_meta
from ..policy import (
    HANDLER_FOR_PROTOCOL,
    JsonValue,
    Policy,
    PolicyMessage,
    ReceptionProtocol,
)
from ..policy.routing_rule import RecipientDomainError, RefusedMessage, route_message
from .render import rejection_text


class UnverifiableDecision(ValueError):
    """A recorded decision whose inputs cannot be replayed (unknown protocol, bad meta)."""


@dataclass(frozen=True)
class Recomputed:
    """What a policy decides for a decision's recorded inputs."""

    outcome: str  # QUEUED, REJECTED or DISCARDED
    queue: str | None  # set when QUEUED or DISCARDED
    meta_after: Mapping[str, JsonValue]
    rejection: str | None  # "550 5.7.1 text" when REJECTED
    sender_after: str | None = None  # the envelope the handler set (None: unchanged)
    recipient_after: str | None = None


def _normalized_response(text: str) -> str:
    return " ".join(text.split())


def _header_only_message(headers: str) -> bytes:
    block = headers.encode("utf-8")
    line_end = b"\r\n" if block.endswith(b"\r\n") or not block.endswith(b"\n") else b"\n"
    if block and not block.endswith(b"\n"):
        block += line_end
    return block + line_end


def recompute(policy: Policy, decision: Mapping[str, Any]) -> Recomputed:
    """Runs `policy` on the inputs of a recorded decision; raises UnverifiableDecision."""
    protocol = decision["reception_protocol"]
    if protocol not in HANDLER_FOR_PROTOCOL:
        raise UnverifiableDecision(f"unknown reception protocol {protocol!r}")
    try:
        meta_before = decode_meta(decision["meta_before"])
    except MetaError as err:
        raise UnverifiableDecision(f"meta_before: {err}") from err
    message = PolicyMessage(
        id=decision["id"],
        sender=decision["sender"],
        recipient=decision["recipient"],
        meta=meta_before,
        headers=decision["headers"],
        # The body is not recorded: the handler gets the header block with an empty body, so
        # methods that change the message (append_header, dkim_sign, ...) replay on it.
        data=_header_only_message(decision["headers"]),
    )
    reception: ReceptionProtocol = protocol
    try:
        routed = route_message(policy, reception, message)
    except RecipientDomainError as err:
        raise UnverifiableDecision(str(err)) from err
    if isinstance(routed, RefusedMessage):
        rejection = _normalized_response(routed.rejection.response)
        return Recomputed("REJECTED", None, routed.meta_after, rejection)
    outcome = "DISCARDED" if routed.discarded else "QUEUED"
    return Recomputed(
        outcome,
        routed.queue,
        routed.meta_after,
        None,
        routed.sender_after,
        routed.recipient_after,
    )


@dataclass(frozen=True)
class DecisionChange:
    """How a recomputed decision differs from the recorded one."""

    id: str
    policy_hash: str  # the recorded decision's policy
    old_outcome: str
    new_outcome: str
    old_queue: str | None
    new_queue: str | None
    meta_keys: tuple[str, ...]  # meta_after keys whose values differ (added, removed, changed)
    old_rejection: str | None
    new_rejection: str | None
    # (old, new) envelope addresses the handler set, when they differ
    envelope: tuple[tuple[str | None, str | None], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "policy_hash": self.policy_hash,
            "outcome": [self.old_outcome, self.new_outcome],
            "queue": [self.old_queue, self.new_queue],
            "meta_keys": list(self.meta_keys),
            "rejection": [self.old_rejection, self.new_rejection],
            "envelope": [list(pair) for pair in self.envelope],
        }

    def describe(self) -> str:
        parts = [self.id]
        if self.old_outcome != self.new_outcome:
            parts.append(f"outcome {self.old_outcome} -> {self.new_outcome}")
        if self.old_queue != self.new_queue:
            parts.append(f"queue {self.old_queue or '-'} -> {self.new_queue or '-'}")
        if self.old_rejection != self.new_rejection:
            parts.append(f"rejection {self.old_rejection!r} -> {self.new_rejection!r}")
        if self.meta_keys:
            parts.append(f"meta {','.join(self.meta_keys)}")
        for old, new in self.envelope:
            parts.append(f"envelope {old or '-'} -> {new or '-'}")
        return "  ".join(parts)


def _canonical(value: Any) -> str:
    # JSON text with sorted keys: Lua tables and recorded JSON compare by content.
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def differing_meta_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[str, ...]:
    keys = set(old) | set(new)
    return tuple(
        sorted(
            key
            for key in keys
            if key not in old or key not in new or _canonical(old[key]) != _canonical(new[key])
        )
    )


def compare(decision: Mapping[str, Any], recomputed: Recomputed) -> DecisionChange | None:
    """The difference between a recorded decision and its recomputation (None: the same).

    The queue counts only for a QUEUED outcome (a rejected message has none, a discarded one
    goes nowhere); meta only when neither side rejected (a rejection's meta is not used).
    """
    old_outcome: str = decision["outcome"]
    old_queue = decision["queue"] if old_outcome == "QUEUED" else None
    new_queue = recomputed.queue if recomputed.outcome == "QUEUED" else None
    old_rejection = decision["rejection"] if old_outcome == "REJECTED" else None
    old_rejection_text = (
        None if old_rejection is None else _normalized_response(rejection_text(old_rejection) or "")
    )
    meta_keys: tuple[str, ...] = ()
    envelope: tuple[tuple[str | None, str | None], ...] = ()
    if old_outcome != "REJECTED" and recomputed.outcome != "REJECTED":
        try:
            meta_after = decode_meta(decision["meta_after"])
        except MetaError:
            meta_after = {}
        meta_keys = differing_meta_keys(meta_after, recomputed.meta_after)
        pairs = (
            (decision.get("sender_after"), recomputed.sender_after),
            (decision.get("recipient_after"), recomputed.recipient_after),
        )
        envelope = tuple((old, new) for old, new in pairs if old != new)
    change = DecisionChange(
        id=decision["id"],
        policy_hash=decision["policy_hash"],
        old_outcome=old_outcome,
        new_outcome=recomputed.outcome,
        old_queue=old_queue,
        new_queue=new_queue,
        meta_keys=meta_keys,
        old_rejection=old_rejection_text,
        new_rejection=recomputed.rejection,
        envelope=envelope,
    )
    unchanged = (
        old_outcome == recomputed.outcome
        and old_queue == new_queue
        and old_rejection_text == recomputed.rejection
        and not meta_keys
        and not envelope
    )
    return None if unchanged else change


@dataclass
class PolicyTally:
    checked: int = 0
    changed: int = 0
    unverifiable: int = 0
    name: str = ""


@dataclass
class VerifyReport:
    """Totals of a verification, per recorded policy hash."""

    policy_hash: str  # the hash of the policy being verified
    per_policy: dict[str, PolicyTally] = field(default_factory=dict)

    def _tally(self, decision: Mapping[str, Any]) -> PolicyTally:
        tally = self.per_policy.setdefault(decision["policy_hash"], PolicyTally())
        tally.name = decision["policy_name"]
        return tally

    def add(self, decision: Mapping[str, Any], change: DecisionChange | None) -> None:
        tally = self._tally(decision)
        tally.checked += 1
        if change is not None:
            tally.changed += 1

    def add_unverifiable(self, decision: Mapping[str, Any]) -> None:
        self._tally(decision).unverifiable += 1

    @property
    def checked(self) -> int:
        return sum(t.checked for t in self.per_policy.values())

    @property
    def changed(self) -> int:
        return sum(t.changed for t in self.per_policy.values())

    @property
    def unverifiable(self) -> int:
        return sum(t.unverifiable for t in self.per_policy.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "summary": True,
            "policy_hash": self.policy_hash,
            "checked": self.checked,
            "changed": self.changed,
            "unverifiable": self.unverifiable,
            "per_policy": [
                {
                    "policy_hash": h,
                    "policy_name": t.name,
                    "same_policy": h == self.policy_hash,
                    "checked": t.checked,
                    "changed": t.changed,
                    "unverifiable": t.unverifiable,
                }
                for h, t in sorted(self.per_policy.items())
            ],
        }

    def to_lines(self) -> list[str]:
        lines = [
            f"verified with policy {self.policy_hash}: {self.checked} decisions checked, "
            f"{self.changed} would change, {self.unverifiable} unverifiable"
        ]
        for policy_hash, tally in sorted(self.per_policy.items()):
            same = "  (same policy: must not change)" if policy_hash == self.policy_hash else ""
            lines.append(
                f"  recorded policy {policy_hash} {tally.name}: {tally.checked} checked, "
                f"{tally.changed} changed, {tally.unverifiable} unverifiable{same}"
            )
        return lines
