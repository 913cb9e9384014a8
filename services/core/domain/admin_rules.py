"""Operator rules on scheduled queues (ROUTING.md section 11): suspend, bounce, rebind; and
on delivery's ready queues: suspend-ready-q (its one ready queue name in `queues`).

Pure: matching a queue name against a rule, expiry against a caller's clock, the responses the
rules log, and the meta a rebind writes. Matching follows KumoMTA's admin `Criteria`: exact
`queues`, when given, take precedence and nothing else matches; otherwise each of campaign,
tenant, domain and routing_domain that the rule names must equal the queue name's component
(a queue without that component does not match), and a rule naming none matches every queue.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from .durations import iso_from_millis
from .queue_name import QueueName
from .smtp_reply import SmtpResponse

DEFAULT_SUSPEND_DURATION = timedelta(minutes=5)
DEFAULT_BOUNCE_DURATION = timedelta(minutes=5)
# A rebind is one-shot, but its rule stays on the topic this long so that an instance taking
# over partitions mid-rebind (crash, rebalance) finishes it; it is idempotent (see `rebound`).
DEFAULT_REBIND_DURATION = timedelta(hours=1)
# The meta keys a rebind may set: the ones that name the scheduled queue.
REBIND_META_KEYS = ("queue", "routing_domain")


class AdminAction(enum.StrEnum):
    SUSPEND = "SUSPEND"
    BOUNCE = "BOUNCE"
    REBIND = "REBIND"
    # Delivery opens no connection for the ready queue named in `queues` while it holds.
    SUSPEND_READY_Q = "SUSPEND_READY_Q"


class AdminRuleError(ValueError):
    """A rule that cannot be created (bad matcher, duration or rebind meta)."""


def _matches(have: str | None, wanted: str | None) -> bool:
    return wanted is None or have == wanted


@dataclass(frozen=True)
class AdminRule:
    """One rule; times are epoch milliseconds."""

    id: str
    action: AdminAction
    reason: str
    created_at: int
    expires_at: int
    campaign: str | None = None
    tenant: str | None = None
    domain: str | None = None
    routing_domain: str | None = None
    queues: tuple[str, ...] = ()
    # REBIND only: meta key -> JSON text of the value to set.
    rebind_meta: Mapping[str, str] = field(default_factory=dict)
    created_by: str = ""

    def __post_init__(self) -> None:
        if self.expires_at < self.created_at:
            raise AdminRuleError("a rule cannot expire before it was created")
        if self.action is AdminAction.REBIND:
            if not self.rebind_meta:
                raise AdminRuleError("a rebind needs meta to set (queue and/or routing_domain)")
            unknown = sorted(set(self.rebind_meta) - set(REBIND_META_KEYS))
            if unknown:
                raise AdminRuleError(f"a rebind may set only queue and routing_domain: {unknown}")
        elif self.rebind_meta:
            raise AdminRuleError("only a rebind sets meta")
        if self.action is AdminAction.SUSPEND_READY_Q and (
            len(self.queues) != 1
            or any(v is not None for v in (self.campaign, self.tenant, self.domain))
            or self.routing_domain is not None
        ):
            raise AdminRuleError("a ready queue suspension names exactly one ready queue")

    @property
    def matches_everything(self) -> bool:
        return not self.queues and all(
            v is None for v in (self.campaign, self.tenant, self.domain, self.routing_domain)
        )

    def matches(self, queue: str) -> bool:
        """Whether the rule applies to the scheduled queue named `queue`."""
        if self.queues:
            return queue in self.queues
        name = QueueName.parse(queue)
        return (
            _matches(name.campaign, self.campaign)
            and _matches(name.tenant, self.tenant)
            and _matches(name.domain, self.domain)
            and _matches(name.routing_domain, self.routing_domain)
        )

    def is_active(self, now_ms: int) -> bool:
        return now_ms < self.expires_at

    def remaining_ms(self, now_ms: int) -> int:
        return max(0, self.expires_at - now_ms)

    def listing_fields(self) -> dict[str, object]:
        """The fields every listing of a rule shows (the admin API's entries and the CLI's)."""
        return {
            "id": self.id,
            "action": self.action.value.lower(),
            "campaign": self.campaign,
            "tenant": self.tenant,
            "domain": self.domain,
            "routing_domain": self.routing_domain,
            "queue_names": list(self.queues),
            "reason": self.reason,
            "created": iso_from_millis(self.created_at),
            "expires": iso_from_millis(self.expires_at),
            "data": {k: json.loads(v) for k, v in self.rebind_meta.items()},
            "created_by": self.created_by,
        }


class AdminRuleSet:
    """The rules in force, by id: what the compacted `admin` topic holds (tombstones remove)."""

    def __init__(self) -> None:
        self._rules: dict[str, AdminRule] = {}
        self.version = 0

    def put(self, rule: AdminRule) -> None:
        self._rules[rule.id] = rule
        self.version += 1

    def remove(self, rule_id: str) -> AdminRule | None:
        removed = self._rules.pop(rule_id, None)
        if removed is not None:
            self.version += 1
        return removed

    def get(self, rule_id: str) -> AdminRule | None:
        return self._rules.get(rule_id)

    def active(self, now_ms: int, action: AdminAction | None = None) -> list[AdminRule]:
        """Rules not expired at `now_ms`, oldest first (of one action, if given)."""
        rules = [
            r
            for r in self._rules.values()
            if r.is_active(now_ms) and (action is None or r.action is action)
        ]
        return sorted(rules, key=lambda r: (r.created_at, r.id))

    def matching(self, action: AdminAction, queue: str, now_ms: int) -> AdminRule | None:
        """The oldest active rule of `action` that applies to `queue`, if any."""
        for rule in self.active(now_ms, action):
            if rule.matches(queue):
                return rule
        return None

    def all(self) -> list[AdminRule]:
        """Every rule held, expired ones included, oldest first."""
        return sorted(self._rules.values(), key=lambda r: (r.created_at, r.id))

    def __len__(self) -> int:
        return len(self._rules)


def suspended_response(reason: str) -> SmtpResponse:
    """What a message due in a suspended queue logs (KumoMTA's text), as a TransientFailure."""
    return SmtpResponse.with_code(
        451, (4, 4, 4), f"KumoMTA internal: scheduled queue is suspended: {reason}"
    )


def ready_queue_suspended_response(reason: str) -> SmtpResponse:
    """What a message of a suspended ready queue logs, as a TransientFailure. KumoMTA puts
    such messages back in their scheduled queue without a record; relaystream's delivery
    answers the attempt, so it says why in the scheduled queue suspension's words."""
    return SmtpResponse.with_code(
        451, (4, 4, 4), f"KumoMTA internal: ready queue is suspended: {reason}"
    )


def bounced_response(reason: str) -> SmtpResponse:
    """What an administratively bounced message logs (AdminBounce, KumoMTA's text)."""
    return SmtpResponse.with_code(551, (5, 7, 1), f"Administrator bounced with reason: {reason}")


def rebound_response(old_queue: str, new_queue: str, reason: str) -> SmtpResponse:
    """What a rebound message logs (AdminRebind, KumoMTA's text)."""
    return SmtpResponse.with_code(250, None, f"Rebound from {old_queue} to {new_queue}: {reason}")


def rebound_meta(meta: Mapping[str, str], rule: AdminRule) -> dict[str, str] | None:
    """The message meta (JSON texts) after `rule`'s rebind, or None when it already has them.

    Returning None for a message the rebind already reached makes a rebind idempotent: an
    instance that reads the rule again (restart, rebalance) skips what was done.
    """
    # Compared as JSON values: the same value may be spelled differently as text.
    if all(
        key in meta and _json_value(meta[key]) == _json_value(text)
        for key, text in rule.rebind_meta.items()
    ):
        return None
    updated = dict(meta)
    updated.update(rule.rebind_meta)
    return updated


def _json_value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def rule_applies_to_rebind(rule: AdminRule, created_at_ms: int) -> bool:
    """A rebind reaches messages that were received before the rule was created ("queued
    now"), never later arrivals."""
    return rule.action is AdminAction.REBIND and created_at_ms <= rule.created_at


class AdminRuleCounts:
    """Messages each rule acted on, per scheduled queue (KumoMTA's `bounced` of a bounce
    list entry): counted by the instance that acted, since it started."""

    def __init__(self) -> None:
        self._by_rule: dict[str, dict[str, int]] = {}

    def add(self, rule_id: str, queue: str, count: int = 1) -> None:
        by_queue = self._by_rule.setdefault(rule_id, {})
        by_queue[queue] = by_queue.get(queue, 0) + count

    def of(self, rule_id: str) -> dict[str, int]:
        return dict(self._by_rule.get(rule_id, {}))

    def total(self, rule_id: str) -> int:
        return sum(self._by_rule.get(rule_id, {}).values())

    def keep_only(self, rule_ids: set[str]) -> None:
        """Drops the counts of rules no longer held (cancelled, compacted away)."""
        for rule_id in set(self._by_rule) - rule_ids:
            del self._by_rule[rule_id]
