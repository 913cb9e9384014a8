"""Helpers the admin API's handlers share: strict request reading and KumoMTA's time format.

Strict: an unknown field or query parameter, or an option relaystream does not implement, is
a 400 naming it, never accepted and ignored.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from aiohttp import web

from ..core.domain.admin_rules import AdminRule
from ..core.domain.durations import format_duration


def bad_request(text: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=text)


def not_implemented(text: str) -> web.HTTPNotImplemented:
    return web.HTTPNotImplemented(text=text)


async def json_object(request: web.Request, allowed: Iterable[str]) -> dict[str, Any]:
    """The request's JSON object; 400 when it is none or has a field outside `allowed`."""
    try:
        body = await request.json()
    except json.JSONDecodeError:
        raise bad_request("expected a JSON body") from None
    if not isinstance(body, dict):
        raise bad_request("expected a JSON object")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise bad_request(f"unknown fields: {', '.join(unknown)} (accepted: "
                          f"{', '.join(sorted(allowed))})")  # fmt: skip
    return body


def refuse_true(body: dict[str, Any], option: str, why: str) -> None:
    """400 when `option` is set true: relaystream does not do it (false is the default)."""
    value = body.get(option)
    if value is None or value is False:
        return
    if value is True:
        raise bad_request(f"{option}: not supported: {why}")
    raise bad_request(f"{option}: expected a boolean")


def check_query(request: web.Request, allowed: Iterable[str]) -> None:
    unknown = sorted(set(request.query) - set(allowed))
    if unknown:
        raise bad_request(f"unknown query parameters: {', '.join(unknown)} (accepted: "
                          f"{', '.join(sorted(allowed))})")  # fmt: skip


def flag(request: web.Request, name: str, *, default: bool = False) -> bool:
    value = request.query.get(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise bad_request(f"{name}: expected true or false")


def rule_json(rule: AdminRule, now_ms: int) -> dict[str, Any]:
    """A rule as KumoMTA's list entries show it (`duration` = time left), plus our fields."""
    return {
        **rule.listing_fields(),
        "duration": format_duration(timedelta(milliseconds=rule.remaining_ms(now_ms))),
    }


def ready_q_suspension_json(rule: AdminRule, now_ms: int) -> dict[str, Any]:
    """A ready queue suspension as KumoMTA lists it (SuspendReadyQueueV1ListEntry)."""
    entry = rule_json(rule, now_ms)
    return {
        "id": rule.id,
        "name": rule.queues[0],
        "reason": rule.reason,
        "duration": entry["duration"],
        "expires": entry["expires"],
    }
