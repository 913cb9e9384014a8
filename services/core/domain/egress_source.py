"""KumoMTA's egress sources (where a connection comes from: `kumo.make_egress_source`) and
pools (weighted sets of sources: `kumo.make_egress_pool`), with the weighted round-robin that
picks a pool's next source."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import Any

from .durations import duration_to_json
from .egress_values import (
    MAX_U16,
    MAX_U32,
    EgressConfigError,
    duration,
    fields_from_mapping,
    host_port,
    ip_address,
    json_value,
    key_source,
    optional,
    string,
    suggestion,
    unsigned,
)
from .routing_target import IpAddress

# The name KumoMTA gives the source (and the one-source pool) used when no pool is named.
UNSPECIFIED = "unspecified"
DEFAULT_EGRESS_TTL = timedelta(seconds=60)


# ---------------------------------------------------------------------------------------
# Egress sources
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SuspendOnFailure:
    """KumoMTA's auto-suspension rule of a source (`suspend_when_unplumbed`)."""

    trigger: object
    duration: timedelta

    @classmethod
    def parse(cls, value: object) -> SuspendOnFailure:
        if not isinstance(value, Mapping) or "duration" not in value:
            raise EgressConfigError("expected {duration = '...', trigger = ...}")
        unknown = sorted(set(value) - {"trigger", "duration"})
        if unknown:
            raise EgressConfigError(f"unknown field {unknown[0]!r}")
        trigger = value.get("trigger", "Immediate")
        if not (
            trigger == "Immediate" or (isinstance(trigger, Mapping) and "Threshold" in trigger)
        ):
            raise EgressConfigError(
                f"trigger: expected 'Immediate' or {{Threshold = ...}}, got {trigger!r}"
            )
        return cls(trigger, duration(value["duration"]))


# What relaystream's delivery cannot do (yet): refused when a source sets them, with why.
UNSUPPORTED_SOURCE_FIELDS: Mapping[str, str] = {
    "ha_proxy_server": "relaystream's delivery does not connect through an HAProxy (PROXY v2)",
    "ha_proxy_source_address": "relaystream's delivery does not connect through an HAProxy",
    "socks5_proxy_server": "relaystream's delivery does not connect through a SOCKS5 proxy",
    "socks5_proxy_source_address": "relaystream's delivery does not connect through SOCKS5",
    "socks5_proxy_username": "relaystream's delivery does not connect through a SOCKS5 proxy",
    "socks5_proxy_password": "relaystream's delivery does not connect through a SOCKS5 proxy",
    "suspend_when_unplumbed": "relaystream does not auto-suspend sources yet",
    "suspend_when_proxy_unhealthy": "relaystream does not auto-suspend sources yet",
}


@dataclass(frozen=True)
class EgressSource:
    """Where a connection comes from (`kumo.make_egress_source`)."""

    name: str
    ehlo_domain: str | None = None
    source_address: IpAddress | None = None
    remote_port: int | None = None
    ttl: timedelta = DEFAULT_EGRESS_TTL

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> EgressSource:
        """A source from KumoMTA's fields. Every KumoMTA field is checked; those delivery
        cannot honour (proxies, auto-suspension) are refused with the reason, never
        accepted and ignored."""
        if not isinstance(mapping, Mapping):
            raise EgressConfigError(f"egress source: expected a table of fields, got {mapping!r}")
        name = mapping.get("name")
        if not isinstance(name, str) or not name:
            raise EgressConfigError("egress source: the field 'name' (a string) is required")
        known = {key: value for key, value in mapping.items() if key in _SOURCE_PARSERS}
        source = fields_from_mapping(cls(name), known, _SOURCE_PARSERS, f"egress source {name!r}")
        for key, value in mapping.items():
            if key in _SOURCE_PARSERS:
                continue
            check = _UNSUPPORTED_SOURCE_PARSERS.get(key) if isinstance(key, str) else None
            if check is None:
                raise EgressConfigError(
                    f"egress source {name!r}: unknown field {key!r}"
                    f"{suggestion(key, [*_SOURCE_PARSERS, *_UNSUPPORTED_SOURCE_PARSERS])}"
                )
            if value is None:
                continue
            try:
                check(value)
            except EgressConfigError as err:
                raise EgressConfigError(
                    f"egress source {name!r}: bad value for field {key!r}: {err}"
                ) from err
            raise EgressConfigError(
                f"egress source {name!r}: field {key!r} is not supported: "
                f"{UNSUPPORTED_SOURCE_FIELDS[key]}"
            )
        return source

    def to_mapping(self) -> dict[str, Any]:
        return {
            item.name: json_value(item.name, getattr(self, item.name), False)
            for item in fields(self)
        }


_SOURCE_PARSERS: dict[str, Callable[[object], object]] = {
    "name": string,
    "ehlo_domain": optional(string),
    "source_address": ip_address,
    "remote_port": unsigned(MAX_U16),
    "ttl": duration,
}
_UNSUPPORTED_SOURCE_PARSERS: dict[str, Callable[[object], object]] = {
    "ha_proxy_server": host_port,
    "ha_proxy_source_address": ip_address,
    "socks5_proxy_server": host_port,
    "socks5_proxy_source_address": ip_address,
    "socks5_proxy_username": string,
    "socks5_proxy_password": key_source,
    "suspend_when_unplumbed": SuspendOnFailure.parse,
    "suspend_when_proxy_unhealthy": SuspendOnFailure.parse,
}

UNSPECIFIED_SOURCE = EgressSource(UNSPECIFIED)


# ---------------------------------------------------------------------------------------
# Egress pools and weighted round-robin
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EgressPoolEntry:
    name: str
    weight: int = 1  # 0: never selected


@dataclass(frozen=True)
class EgressPool:
    """A weighted set of egress sources (`kumo.make_egress_pool`)."""

    name: str
    entries: tuple[EgressPoolEntry, ...] = ()
    ttl: timedelta = DEFAULT_EGRESS_TTL

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> EgressPool:
        if not isinstance(mapping, Mapping):
            raise EgressConfigError(f"egress pool: expected a table of fields, got {mapping!r}")
        name = mapping.get("name")
        if not isinstance(name, str) or not name:
            raise EgressConfigError("egress pool: the field 'name' (a string) is required")
        return fields_from_mapping(cls(name), mapping, _POOL_PARSERS, f"egress pool {name!r}")

    def to_mapping(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "entries": [{"name": entry.name, "weight": entry.weight} for entry in self.entries],
            "ttl": duration_to_json(self.ttl),
        }


def _pool_entries(value: object) -> tuple[EgressPoolEntry, ...]:
    if isinstance(value, Mapping) and not value:
        return ()
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise EgressConfigError(f"expected a list of {{name = ..., weight = ...}}, got {value!r}")
    entries = []
    for position, item in enumerate(value, start=1):
        if not isinstance(item, Mapping):
            raise EgressConfigError(f"entry {position}: expected {{name = ..., weight = ...}}")
        unknown = sorted(str(key) for key in set(item) - {"name", "weight"})
        if unknown:
            raise EgressConfigError(f"entry {position}: unknown field {unknown[0]!r}")
        entry_name = item.get("name")
        if not isinstance(entry_name, str) or not entry_name:
            raise EgressConfigError(f"entry {position}: the field 'name' (a string) is required")
        weight = item.get("weight", 1)
        try:
            weight = unsigned(MAX_U32)(weight)
        except EgressConfigError as err:
            raise EgressConfigError(f"entry {position} ({entry_name!r}): weight: {err}") from err
        entries.append(EgressPoolEntry(entry_name, weight))
    return tuple(entries)


_POOL_PARSERS: dict[str, Callable[[object], object]] = {
    "name": string,
    "entries": _pool_entries,
    "ttl": duration,
}

UNSPECIFIED_POOL = EgressPool(UNSPECIFIED, (EgressPoolEntry(UNSPECIFIED, 1),))


@dataclass(frozen=True)
class RoundRobinState:
    """Where a pool's weighted round-robin stands (KumoMTA starts at index 0, weight 0)."""

    index: int = 0
    weight: int = 0


def next_source(
    entries: Sequence[EgressPoolEntry], state: RoundRobinState
) -> tuple[str, RoundRobinState] | None:
    """The next source of a pool and the state after it, by interleaved weighted
    round-robin (the LVS scheduler KumoMTA uses): over a full cycle each entry is picked
    in proportion to its weight. Entries of weight 0 are never picked; None when no
    entry has a weight."""
    usable = [entry for entry in entries if entry.weight > 0]
    if not usable:
        return None
    if len(usable) == 1:
        return usable[0].name, state
    max_weight = max(entry.weight for entry in usable)
    step = 0
    for entry in usable:
        step = math.gcd(step, entry.weight)
    index, weight = state.index, state.weight
    while True:
        index = (index + 1) % len(usable)
        if index == 0:
            weight = max(weight - step, 0)
            if weight == 0:
                weight = max_weight
        if usable[index].weight >= weight:
            return usable[index].name, RoundRobinState(index, weight)


def source_sequence(entries: Sequence[EgressPoolEntry], count: int) -> list[str]:
    """The first `count` sources the round-robin picks from a fresh state."""
    picked: list[str] = []
    state = RoundRobinState()
    for _ in range(count):
        step = next_source(entries, state)
        if step is None:
            break
        name, state = step
        picked.append(name)
    return picked
