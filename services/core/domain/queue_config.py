"""Queue configuration (ROUTING.md section 5): what `get_queue_config` returns, with
KumoMTA's field names and defaults, checked strictly.

This module is the one place for the defaults. The resolved config travels to the delivery
service as JSON (`to_json`/`from_json`); operator overrides apply on top field by field
(`merge_overrides`).
"""

from __future__ import annotations

import functools
import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import timedelta
from typing import Any

from .durations import DurationError, Rate, RateError, duration_to_json, parse_duration
from .routing_target import (
    IpAddress,
    RoutingTarget,
    RoutingTargetError,
    TargetKind,
    parse_ip,
    socket_text,
    split_colon_port,
)

DEFAULT_RETRY_INTERVAL = timedelta(minutes=20)
DEFAULT_MAX_AGE = timedelta(days=7)
DEFAULT_REAP_INTERVAL = timedelta(minutes=10)
DEFAULT_REFRESH_INTERVAL = timedelta(minutes=1)

# KumoMTA fields that tune its in-memory queue structures; they have no meaning here, and
# silently ignoring them would hide a policy that expects them to work.
_UNSUPPORTED_FIELDS = frozenset(
    {"strategy", "refresh_strategy", "timerwheel_tick_interval", "shrink_policy"}
)


class QueueConfigError(ValueError):
    """A queue config that names an unknown field or holds a bad value."""


@dataclass(frozen=True)
class MxListName:
    """An mx_list string: a name resolved for A/AAAA only (never MX), optionally `name:port`,
    or a literal (`[10.0.0.1]`, `[IPv6:::1]`, `[::1]`) or bare IP that needs no DNS."""

    entry: str
    host: str
    port: int | None = None
    ip: IpAddress | None = None

    @property
    def label(self) -> str:
        """This entry's part of the `mx_list:` site name: the string as configured."""
        return self.entry

    def to_json_value(self) -> str:
        return self.entry


@dataclass(frozen=True)
class MxListResolved:
    """An mx_list table `{name=..., addr=...}`: no DNS at all; `name` is the peer name (logs,
    TLS SNI and verification), `addr` an IP with optional port."""

    name: str
    ip: IpAddress
    port: int | None = None

    @property
    def addr(self) -> str:
        return socket_text(self.ip, self.port)

    @property
    def label(self) -> str:
        """This entry's part of the `mx_list:` site name: its address (not its name)."""
        return self.addr

    def to_json_value(self) -> dict[str, str]:
        return {"name": self.name, "addr": self.addr}


MxListEntry = MxListName | MxListResolved


def parse_mx_list_entry(value: object) -> MxListEntry:
    if isinstance(value, str):
        return _parse_mx_list_name(value)
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - {"name", "addr"})
        if unknown:
            raise QueueConfigError(f"unknown field {unknown[0]!r} in mx_list entry")
        name, addr = value.get("name"), value.get("addr")
        if not isinstance(name, str) or not isinstance(addr, str):
            raise QueueConfigError("mx_list entry table needs string 'name' and 'addr'")
        ip, port = _parse_socket_address(addr)
        return MxListResolved(name, ip, port)
    raise QueueConfigError(f"bad mx_list entry {value!r}: expected a string or {{name, addr}}")


def _parse_mx_list_name(entry: str) -> MxListName:
    rest, port = split_colon_port(entry)
    bare_ip = parse_ip(rest)
    if bare_ip is not None:
        return MxListName(entry, str(bare_ip), port, bare_ip)
    try:
        target = RoutingTarget.classify(entry)
    except RoutingTargetError as err:
        raise QueueConfigError(f"bad mx_list entry {entry!r}: {err}") from err
    if target.kind is TargetKind.IP_LITERAL:
        return MxListName(entry, target.host, target.port, target.ip)
    return MxListName(entry, target.host, target.port)


def _parse_socket_address(addr: str) -> tuple[IpAddress, int | None]:
    """`10.0.0.1`, `::1`, `10.0.0.1:25`, `[::1]:100`, `[10.0.0.1]` or `[::1]`."""
    ip = parse_ip(addr)
    if ip is not None:
        return ip, None
    host, port = addr, None
    if addr.startswith("["):
        close = addr.find("]")
        remainder = addr[close + 1 :] if close >= 0 else ""
        if close < 0 or (remainder and not remainder.startswith(":")):
            raise QueueConfigError(f"bad mx_list addr {addr!r}")
        host = addr[1:close]
        if remainder:
            _, port = split_colon_port("x" + remainder)
            if port is None:
                raise QueueConfigError(f"bad mx_list addr {addr!r}: bad port")
    else:
        host, port = split_colon_port(addr)
    ip = parse_ip(host)
    if ip is None:
        raise QueueConfigError(f"bad mx_list addr {addr!r}: not an IP address")
    if port is not None and isinstance(ip, ipaddress.IPv6Address) and not addr.startswith("["):
        raise QueueConfigError(f"bad mx_list addr {addr!r}: write an IPv6 port as [addr]:port")
    return ip, port


@dataclass(frozen=True)
class QueueConfig:
    retry_interval: timedelta = DEFAULT_RETRY_INTERVAL
    max_retry_interval: timedelta | None = None
    max_age: timedelta = DEFAULT_MAX_AGE
    egress_pool: str | None = None
    max_message_rate: Rate | None = None
    # protocol.smtp.mx_list: explicit hosts replacing MX resolution (None: resolve MX).
    mx_list: tuple[MxListEntry, ...] | None = None
    reap_interval: timedelta = DEFAULT_REAP_INTERVAL
    refresh_interval: timedelta = DEFAULT_REFRESH_INTERVAL
    provider_name: str | None = None

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> QueueConfig:
        """A config from KumoMTA-style fields; absent fields take their defaults."""
        return merge_overrides(cls(), mapping)

    @classmethod
    def from_json(cls, text: str) -> QueueConfig:
        """The config `to_json` wrote. Memoised: every request of a queue carries the same
        text, and parsing it (about 45 us) is a measurable share of a delivery."""
        return _config_from_json(text)

    def to_mapping(self) -> dict[str, Any]:
        """Every field in the form `from_mapping` reads (durations as seconds)."""
        return {
            "retry_interval": duration_to_json(self.retry_interval),
            "max_retry_interval": _optional_duration(self.max_retry_interval),
            "max_age": duration_to_json(self.max_age),
            "egress_pool": self.egress_pool,
            "max_message_rate": None
            if self.max_message_rate is None
            else str(self.max_message_rate),
            "protocol": {
                "smtp": {
                    "mx_list": []
                    if self.mx_list is None
                    else [entry.to_json_value() for entry in self.mx_list]
                }
            },
            "reap_interval": duration_to_json(self.reap_interval),
            "refresh_interval": duration_to_json(self.refresh_interval),
            "provider_name": self.provider_name,
        }

    def to_json(self) -> str:
        """Compact, sorted JSON; memoised per config (immutable), as the scheduler writes the
        same queue's config into every request it releases."""
        return _config_json(self)

    @property
    def mx_list_site_name(self) -> str | None:
        """`mx_list:` + entry labels joined by `,`: queues with identical lists share a site."""
        if self.mx_list is None:
            return None
        return "mx_list:" + ",".join(entry.label for entry in self.mx_list)


def _optional_duration(value: timedelta | None) -> int | float | None:
    return None if value is None else duration_to_json(value)


_DURATION_FIELDS = frozenset({"retry_interval", "max_age", "reap_interval", "refresh_interval"})
_OPTIONAL_STRING_FIELDS = frozenset({"egress_pool", "provider_name"})
_KNOWN_FIELDS = frozenset(f.name for f in fields(QueueConfig)) - {"mx_list"} | {"protocol"}


def is_queue_config_field(name: str) -> bool:
    """Whether `name` is a field of a queue config here (its value may still be bad)."""
    return name in _KNOWN_FIELDS


def is_kumomta_tuning_field(name: str) -> bool:
    """Whether `name` is one of KumoMTA's in-memory queue tuning fields, which mean nothing
    here (a policy's own make_queue_config refuses them)."""
    return name in _UNSUPPORTED_FIELDS


def merge_overrides(base: QueueConfig, overrides: Mapping[str, Any]) -> QueueConfig:
    """`base` with each field named in `overrides` replaced. A null value resets a field to
    its default; `protocol` replaces the whole protocol table."""
    if not isinstance(overrides, Mapping):
        raise QueueConfigError("queue config must be a table of fields")
    changes: dict[str, Any] = {}
    defaults = QueueConfig()
    for key, value in overrides.items():
        if key in _UNSUPPORTED_FIELDS:
            raise QueueConfigError(
                f"unsupported field {key!r}: it tunes KumoMTA's in-memory queues; relaystream's "
                "queues are Kafka topics that scheduling indexes, with nothing to tune"
            )
        if key not in _KNOWN_FIELDS:
            raise QueueConfigError(f"unknown field {key!r}")
        if key == "protocol":
            changes["mx_list"] = None if value is None else _parse_protocol(value)
        elif value is None:
            changes[key] = getattr(defaults, key)
        else:
            changes[key] = _parse_field(key, value)
    return replace(base, **changes)


def _parse_field(key: str, value: Any) -> Any:
    try:
        if key in _DURATION_FIELDS or key == "max_retry_interval":
            return parse_duration(value)
        if key == "max_message_rate":
            if not isinstance(value, str):
                raise RateError(f"expected a string like '100/s', got {value!r}")
            return Rate.parse(value)
    except (DurationError, RateError) as err:
        raise QueueConfigError(f"bad value for field {key!r}: {err}") from err
    if key in _OPTIONAL_STRING_FIELDS:
        if not isinstance(value, str):
            raise QueueConfigError(f"bad value for field {key!r}: expected a string")
        return value
    raise QueueConfigError(f"unknown field {key!r}")  # pragma: no cover - guarded by caller


# KumoMTA's other delivery protocols, refused with why (README, refusals).
_REFUSED_PROTOCOLS = {
    "maildir_path": "relaystream delivers over SMTP only; its delivery writes no mailboxes "
    "(the services share Kafka topics, not a file system)",
    "custom_lua": "relaystream's delivery runs no policy code; a queue delivers over SMTP",
}


def _parse_protocol(value: Any) -> tuple[MxListEntry, ...] | None:
    if not isinstance(value, Mapping):
        raise QueueConfigError("bad value for field 'protocol': expected a table")
    unknown = sorted(set(value) - {"smtp"})
    for name in unknown:
        if name in _REFUSED_PROTOCOLS:
            raise QueueConfigError(
                f"protocol.{name}: not available in relaystream: {_REFUSED_PROTOCOLS[name]}"
            )
    if unknown:
        raise QueueConfigError(f"unknown field 'protocol.{unknown[0]}' (only smtp is supported)")
    smtp = value.get("smtp")
    if smtp is None:
        return None
    if not isinstance(smtp, Mapping):
        raise QueueConfigError("bad value for field 'protocol.smtp': expected a table")
    unknown = sorted(set(smtp) - {"mx_list"})
    if unknown:
        raise QueueConfigError(f"unknown field 'protocol.smtp.{unknown[0]}'")
    mx_list = smtp.get("mx_list")
    if mx_list is None:
        return None
    if isinstance(mx_list, Mapping) and not mx_list:
        return None  # an empty Lua table may arrive as an empty mapping
    if isinstance(mx_list, str | bytes) or not isinstance(mx_list, list | tuple):
        raise QueueConfigError("bad value for field 'protocol.smtp.mx_list': expected a list")
    entries = tuple(parse_mx_list_entry(entry) for entry in mx_list)
    # KumoMTA treats an empty list as "no mx_list": resolve MX as usual.
    return entries or None


# The memos of QueueConfig's JSON form. A queue config is immutable and there are as many
# distinct ones as queues with distinct settings; failures (QueueConfigError) are not cached.
_JSON_MEMO_SIZE = 4096


@functools.lru_cache(maxsize=_JSON_MEMO_SIZE)
def _config_from_json(text: str) -> QueueConfig:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise QueueConfigError(f"queue config is not JSON: {err}") from err
    if not isinstance(value, dict):
        raise QueueConfigError("queue config JSON must be an object")
    return QueueConfig.from_mapping(value)


@functools.lru_cache(maxsize=_JSON_MEMO_SIZE)
def _config_json(config: QueueConfig) -> str:
    return json.dumps(config.to_mapping(), sort_keys=True, separators=(",", ":"))
