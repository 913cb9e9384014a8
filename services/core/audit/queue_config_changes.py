"""Operator queue-config overrides as `relaystream queue-config` builds them, and their history.

An override is a JSON object of queue-config fields in KumoMTA's shape (the scheduling service
merges it field by field over the policy's `get_queue_config`, a domain's override first, then
an exact queue name's). Durations stay as typed ("5m"), `mx_list` goes under
`protocol.smtp.mx_list`. Every override is checked with the same `QueueConfig` model the
policy's configs go through, so the scheduler never meets one it would ignore.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol, TypeVar

from ..domain.queue_config import QueueConfig, QueueConfigError
from ..domain.queue_name import QueueNameError, normalize_recipient_domain

# The fields `queue-config set` can override ("mx_list" stands for protocol.smtp.mx_list).
OVERRIDE_FIELDS = (
    "mx_list",
    "retry_interval",
    "max_retry_interval",
    "max_age",
    "max_message_rate",
    "egress_pool",
)


def override_target(text: str) -> str:
    """A domain (normalized as queue names hold it: lowercase A-label) or, when `text` has a
    `@`, `:` or `!`, an exact scheduled queue name kept verbatim."""
    if not text:
        raise QueueConfigError("empty target")
    if any(mark in text for mark in "@:!"):
        return text
    try:
        return normalize_recipient_domain(text)
    except QueueNameError as err:
        raise QueueConfigError(f"bad target {text!r}: {err}") from err


def parse_mx_list_option(text: str) -> str | dict[str, str]:
    """`--mx-list` value: `name=addr` is the table {name, addr} (no DNS), else a host name or
    literal resolved for A/AAAA only."""
    name, equals, addr = text.partition("=")
    return {"name": name, "addr": addr} if equals else text


def override_fields(options: Mapping[str, Any]) -> dict[str, Any]:
    """The override JSON fields for the options that were given (None: not given)."""
    fields: dict[str, Any] = {}
    for name in OVERRIDE_FIELDS:
        value = options.get(name)
        if value is None:
            continue
        if name == "mx_list":
            entries = [parse_mx_list_option(entry) for entry in value]
            fields["protocol"] = {"smtp": {"mx_list": entries}}
        else:
            fields[name] = value
    return fields


def _field_key(name: str) -> str:
    return "protocol" if name == "mx_list" else name


def merged_override(
    current: Mapping[str, Any] | None, changes: Mapping[str, Any], unset: Iterable[str] = ()
) -> dict[str, Any]:
    """`current` with `changes` applied and the `unset` fields removed (so the policy's value
    applies again), validated: raises QueueConfigError, naming the bad field."""
    merged = dict(current or {})
    for name in unset:
        if name not in OVERRIDE_FIELDS:
            raise QueueConfigError(f"cannot unset unknown field {name!r}")
        merged.pop(_field_key(name), None)
    merged.update(changes)
    QueueConfig.from_mapping(merged)
    return merged


class OverrideChange(Protocol):
    """One record of the `queue-config` topic (core.kafka.queue_config_store.ConfigChange)."""

    @property
    def target(self) -> str: ...

    @property
    def config(self) -> Mapping[str, Any] | None:  # None: removed (a tombstone)
        ...


ChangeT = TypeVar("ChangeT", bound=OverrideChange)


def field_changes(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> dict[str, tuple[Any, Any]]:
    """Field -> (old, new) for every field that differs between two overrides."""
    old, new = before or {}, after or {}
    return {
        key: (old.get(key), new.get(key))
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    }


def history_with_changes(
    changes: Iterable[ChangeT],
) -> list[tuple[ChangeT, dict[str, tuple[Any, Any]]]]:
    """Each change with its field differences from the previous retained change of its target
    (log order per partition: `queue-config` is one partition, so this is the order applied)."""
    previous: dict[str, Mapping[str, Any] | None] = {}
    result: list[tuple[ChangeT, dict[str, tuple[Any, Any]]]] = []
    for change in changes:
        result.append((change, field_changes(previous.get(change.target), change.config)))
        previous[change.target] = change.config
    return result
