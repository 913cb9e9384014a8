"""Value forms of KumoMTA's egress configuration (egress.py, egress_source.py): limits,
throttles, durations, CIDR sets, key sources, enumerations, and the strict reading of a
table of fields (an unknown key is an error that names it, as KumoMTA's serde
deny_unknown_fields makes it)."""

from __future__ import annotations

import difflib
import enum
import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, TypeVar

from .durations import DurationError, Rate, RateError, duration_to_json, parse_duration
from .mx_plan import PROHIBITED_NETWORKS
from .routing_target import IpAddress, parse_ip, split_colon_port

MAX_U16 = 65535
MAX_U32 = 2**32 - 1
MAX_U64 = 2**64 - 1


class EgressConfigError(ValueError):
    """An egress path config, source or pool with an unknown key or a bad value."""


@dataclass(frozen=True)
class LimitSpec:
    """A concurrency limit (`connection_limit`): a number >= 1, or a string with optional
    `_`/`,` separators and a `local:` prefix (`"local:10"`: this process only)."""

    limit: int
    force_local: bool = False

    @classmethod
    def parse(cls, value: object) -> LimitSpec:
        if isinstance(value, bool):
            raise EgressConfigError(f"expected a number or a string limit, got {value!r}")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int):
            if value < 1 or value > MAX_U64:
                raise EgressConfigError(f"limit must be 1 or larger, got {value}")
            return cls(value)
        if not isinstance(value, str):
            raise EgressConfigError(f"expected a number or a string limit, got {value!r}")
        text = value
        force_local = text.startswith("local:")
        if force_local:
            text = text[len("local:") :]
        digits = text.replace("_", "").replace(",", "")
        if not digits.isascii() or not digits.isdigit() or int(digits) > MAX_U64:
            raise EgressConfigError(f"invalid limit {value!r}")
        if int(digits) == 0:
            raise EgressConfigError(f"invalid limit {value!r}: must be greater than 0")
        return cls(int(digits), force_local)

    def to_json_value(self) -> int | str:
        return f"local:{self.limit}" if self.force_local else self.limit


@dataclass(frozen=True)
class CidrSet:
    """A set of networks (`prohibited_hosts`, `skip_hosts`): CIDR blocks or single IPs."""

    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def parse(cls, value: object) -> CidrSet:
        if isinstance(value, Mapping) and not value:
            return cls()  # an empty Lua table arrives as an empty mapping
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            raise EgressConfigError(f"expected a list of CIDR blocks, got {value!r}")
        networks = []
        for item in value:
            if not isinstance(item, str):
                raise EgressConfigError(f"expected a CIDR block string, got {item!r}")
            try:
                networks.append(ipaddress.ip_network(item, strict=True))
            except ValueError as err:
                raise EgressConfigError(f"invalid CIDR block {item!r}: {err}") from err
        return cls(tuple(networks))

    def contains(self, ip: IpAddress) -> bool:
        return any(ip in network for network in self.networks)

    def to_json_value(self) -> list[str]:
        return [str(network) for network in self.networks]


DEFAULT_PROHIBITED_HOSTS = CidrSet(PROHIBITED_NETWORKS)


def key_source(value: object) -> object:
    """A KumoMTA KeySource (where a secret comes from): a file name, {key_data = ...},
    a Vault location, or an event to call. Kept as given."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        keys = set(value)
        if keys == {"key_data"} and isinstance(value["key_data"], str):
            return dict(value)
        if {"vault_mount", "vault_path"} <= keys <= {
            "vault_address",
            "vault_token",
            "vault_mount",
            "vault_path",
            "vault_key",
        } and all(isinstance(item, str) for item in value.values()):
            return dict(value)
        if keys == {"event_name", "event_args"} and isinstance(value["event_name"], str):
            return dict(value)
    raise EgressConfigError(
        "expected a key source: a file name, {key_data = '...'}, a Vault location "
        "{vault_mount, vault_path, ...} or {event_name, event_args}"
    )


# Key-source values that hold the secret itself, shown as this in reports.
REDACTED = "(redacted)"


def redact_key_source(value: object) -> object:
    if isinstance(value, Mapping):
        return {
            key: REDACTED if key in ("key_data", "vault_token") else item
            for key, item in value.items()
        }
    return value


def boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise EgressConfigError(f"expected true or false, got {value!r}")
    return value


def unsigned(maximum: int) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
            raise EgressConfigError(f"expected a whole number from 0 to {maximum}, got {value!r}")
        return value

    return parse


def string(value: object) -> str:
    if not isinstance(value, str):
        raise EgressConfigError(f"expected a string, got {value!r}")
    return value


def duration(value: object) -> timedelta:
    try:
        return parse_duration(value)
    except DurationError as err:
        raise EgressConfigError(str(err)) from err


def throttle(value: object) -> Rate:
    if not isinstance(value, str):
        raise EgressConfigError(f"expected a throttle like '100/s' or '10/min', got {value!r}")
    try:
        return Rate.parse(value)
    except RateError as err:
        raise EgressConfigError(str(err)) from err


E = TypeVar("E", bound=enum.Enum)


def choice(kind: type[E]) -> Callable[[object], E]:
    def parse(value: object) -> E:
        for member in kind:
            if member.value == value:
                return member
        allowed = ", ".join(str(member.value) for member in kind)
        raise EgressConfigError(f"expected one of {allowed}; got {value!r}")

    return parse


V = TypeVar("V")


def named(parse_item: Callable[[object], V]) -> Callable[[object], tuple[tuple[str, V], ...]]:
    """A table of name -> value (additional_connection_limits and the like), in order."""

    def parse(value: object) -> tuple[tuple[str, V], ...]:
        if not isinstance(value, Mapping):
            raise EgressConfigError(f"expected a table of name = value, got {value!r}")
        items = []
        for name, item in value.items():
            if not isinstance(name, str):
                raise EgressConfigError(f"expected string names, got {name!r}")
            try:
                items.append((name, parse_item(item)))
            except EgressConfigError as err:
                raise EgressConfigError(f"{name!r}: {err}") from err
        return tuple(items)

    return parse


def optional(parse_item: Callable[[object], V]) -> Callable[[object], V | None]:
    def parse(value: object) -> V | None:
        return None if value is None else parse_item(value)

    return parse


def strings(value: object) -> tuple[str, ...]:
    if isinstance(value, Mapping) and not value:
        return ()
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise EgressConfigError(f"expected a list of strings, got {value!r}")
    return tuple(string(item) for item in value)


T = TypeVar("T")


def fields_from_mapping(
    base: T,
    mapping: Mapping[str, Any],
    parsers: Mapping[str, Callable[[object], object]],
    what: str,
) -> T:
    if not isinstance(mapping, Mapping):
        raise EgressConfigError(f"{what}: expected a table of fields, got {mapping!r}")
    changes: dict[str, object] = {}
    for key, value in mapping.items():
        parse = parsers.get(key) if isinstance(key, str) else None
        if parse is None:
            raise EgressConfigError(f"{what}: unknown field {key!r}{suggestion(key, parsers)}")
        if value is None:
            continue
        try:
            changes[key] = parse(value)
        except EgressConfigError as err:
            raise EgressConfigError(f"{what}: bad value for field {key!r}: {err}") from err
    return replace(base, **changes)  # type: ignore[type-var]


def suggestion(key: object, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(key), sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def json_value(name: str, value: object, redact: bool) -> object:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, timedelta):
        return duration_to_json(value)
    if isinstance(value, Rate):
        return str(value)
    if isinstance(value, LimitSpec | CidrSet):
        return value.to_json_value()
    if isinstance(value, IpAddress):
        return str(value)
    if isinstance(value, Mapping):  # a key source given as a table
        return redact_key_source(value) if redact else dict(value)
    if isinstance(value, tuple):
        if name.startswith("additional_"):
            return {key: json_value(name, item, redact) for key, item in value}
        return [json_value(name, item, redact) for item in value]
    raise TypeError(f"{name}: no JSON form for {value!r}")  # pragma: no cover


def ip_address(value: object) -> IpAddress:
    ip = parse_ip(value) if isinstance(value, str) else None
    if ip is None:
        raise EgressConfigError(f"expected an IP address, got {value!r}")
    return ip


def host_port(value: object) -> str:
    """`host:port` or `[ipv6]:port` (a proxy server)."""
    text = string(value)
    host, port = split_colon_port(text)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if port is None or not host or any(char.isspace() for char in host):
        raise EgressConfigError(f"expected host:port, got {value!r}")
    return text
