"""Operator rules on the compacted `admin` topic: publish, cancel, read.

Key = rule id, value = an `AdminCommand` event; a tombstone cancels the rule and lets
compaction drop it. Every scheduling instance reads the whole topic and follows it
(services/scheduling/admin_reader.py), so a rule published here applies to every partition;
every delivery instance follows it too, for the ready queue suspensions.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from ..domain.admin_rules import (
    DEFAULT_BOUNCE_DURATION,
    DEFAULT_REBIND_DURATION,
    DEFAULT_SUSPEND_DURATION,
    AdminAction,
    AdminRule,
    AdminRuleSet,
)
from ..events.codec import DecodeError, decode, encode
from ..events.records import AdminCommand
from .dead_letter import RecordRejected
from .producer import Delivered, EventProducer
from .replay import ReplayedRecord, replay_topic

CLIENT_ID = "relaystream-admin"

DEFAULT_DURATIONS: dict[AdminAction, timedelta] = {
    AdminAction.SUSPEND: DEFAULT_SUSPEND_DURATION,
    AdminAction.BOUNCE: DEFAULT_BOUNCE_DURATION,
    AdminAction.REBIND: DEFAULT_REBIND_DURATION,
    AdminAction.SUSPEND_READY_Q: DEFAULT_SUSPEND_DURATION,
}

UndecodableHandler = Callable[[ReplayedRecord, str], None]


def _millis(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def _datetime(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, UTC)


def new_rule_id() -> str:
    """A fresh rule id (a UUID, as KumoMTA's admin API returns)."""
    return str(uuid.uuid4())


def new_rule(
    action: AdminAction,
    *,
    reason: str,
    now: datetime,
    duration: timedelta | None = None,
    expires: datetime | None = None,
    campaign: str | None = None,
    tenant: str | None = None,
    domain: str | None = None,
    routing_domain: str | None = None,
    queues: tuple[str, ...] = (),
    rebind_meta: Mapping[str, str] | None = None,
    created_by: str = "",
) -> AdminRule:
    """A rule with a new id, expiring at `expires` or after `duration` (default per action)."""
    created = _millis(now)
    if expires is not None:
        expires_at = _millis(expires)
    else:
        expires_at = created + int((duration or DEFAULT_DURATIONS[action]).total_seconds() * 1000)
    return AdminRule(
        id=new_rule_id(),
        action=action,
        reason=reason,
        created_at=created,
        expires_at=expires_at,
        campaign=campaign,
        tenant=tenant,
        domain=domain,
        routing_domain=routing_domain,
        queues=tuple(queues),
        rebind_meta=dict(rebind_meta or {}),
        created_by=created_by,
    )


def command_of(rule: AdminRule) -> AdminCommand:
    return {
        "id": rule.id,
        "action": rule.action.value,
        "campaign": rule.campaign,
        "tenant": rule.tenant,
        "domain": rule.domain,
        "routing_domain": rule.routing_domain,
        "queues": list(rule.queues),
        "reason": rule.reason,
        "created_at": _datetime(rule.created_at),
        "expires_at": _datetime(rule.expires_at),
        "rebind_meta": dict(rule.rebind_meta),
        "created_by": rule.created_by,
    }


def rule_of(command: Mapping[str, Any]) -> AdminRule:
    """The rule an `AdminCommand` event holds; raises AdminRuleError when it is invalid."""
    return AdminRule(
        id=command["id"],
        action=AdminAction(command["action"]),
        reason=command["reason"],
        created_at=_millis(command["created_at"]),
        expires_at=_millis(command["expires_at"]),
        campaign=command["campaign"],
        tenant=command["tenant"],
        domain=command["domain"],
        routing_domain=command["routing_domain"],
        queues=tuple(command["queues"]),
        rebind_meta=dict(command["rebind_meta"]),
        created_by=command["created_by"],
    )


def decode_rule(value: bytes) -> AdminRule:
    """A record value as a rule; raises ValueError (DecodeError, AdminRuleError) if invalid."""
    _, command = decode(value, "AdminCommand")
    return rule_of(command)


def apply_record(rules: AdminRuleSet, key: bytes | None, value: bytes | None) -> AdminRule | None:
    """Applies one `admin` record to `rules`: a rule is added or replaced, a tombstone removes
    one. Returns the rule added (None for a tombstone).

    Raises DecodeError or ValueError for a record that is no valid rule, or whose key is not
    its rule id; the key's rule is then removed all the same, since compaction keeps that
    record, not the rule it replaced (so a restart, or `read_rules`, sees the same)."""
    rule_id = key.decode("utf-8", "replace") if key is not None else None
    if value is None:
        if rule_id is not None:
            rules.remove(rule_id)
        return None
    try:
        rule = decode_rule(value)
        if rule_id != rule.id:
            raise ValueError(f"record key {rule_id!r} is not its rule id {rule.id!r}")
    except (DecodeError, ValueError):
        if rule_id is not None:
            rules.remove(rule_id)
        raise
    rules.put(rule)
    return rule


def apply_or_reject(
    rules: AdminRuleSet, key: bytes | None, value: bytes | None
) -> AdminRule | None:
    """`apply_record` for a topic follower: an invalid record raises RecordRejected (it goes
    to the dead-letter topic)."""
    try:
        return apply_record(rules, key, value)
    except (DecodeError, ValueError) as error:
        kind = "decode" if isinstance(error, DecodeError) else "validation"
        raise RecordRejected(str(error), kind) from error


def _ignore(record: ReplayedRecord, reason: str) -> None:
    return None


async def read_rules(
    bootstrap: str, topic: str, *, on_undecodable: UndecodableHandler = _ignore
) -> AdminRuleSet:
    """Every rule on the topic (expired ones too, until cancelled or compacted)."""
    rules = AdminRuleSet()
    async for record in replay_topic(bootstrap, topic, client_id=CLIENT_ID):
        try:
            apply_record(rules, record.key, record.value)
        except (DecodeError, ValueError) as error:
            on_undecodable(record, str(error))
    return rules


async def publish_rule(producer: EventProducer, topic: str, rule: AdminRule) -> Delivered:
    """Writes `rule` (acks=all) keyed by its id."""
    return await producer.send(topic, encode("AdminCommand", command_of(rule)), key=rule.id)


async def cancel_rule(producer: EventProducer, topic: str, rule_id: str) -> Delivered:
    """Writes the tombstone of `rule_id`: every instance stops applying it."""
    return await producer.send(topic, None, key=rule_id)


async def publish_rule_once(bootstrap: str, topic: str, rule: AdminRule) -> Delivered:
    """`publish_rule` with a producer of its own (the CLI)."""
    async with EventProducer(bootstrap, client_id=CLIENT_ID) as producer:
        return await publish_rule(producer, topic, rule)


async def cancel_rule_once(bootstrap: str, topic: str, rule_id: str) -> Delivered:
    """`cancel_rule` with a producer of its own (the CLI)."""
    async with EventProducer(bootstrap, client_id=CLIENT_ID) as producer:
        return await cancel_rule(producer, topic, rule_id)
