"""KumoMTA's egress model as plain data: the egress path config (how mail travels from one
egress source to one site), egress sources (where a connection comes from), egress pools
(weighted sets of sources) and the weighted round-robin that picks a pool's next source.

Field names, defaults and value forms are KumoMTA's (its `EgressPathConfig`,
`EgressSource` and `EgressPool`); as there, a key nobody knows is an error that names it.
"""

from __future__ import annotations

import difflib
import enum
import ipaddress
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import timedelta
from typing import Any, TypeVar

from .durations import DurationError, Rate, RateError, duration_to_json, parse_duration
from .mx_plan import PROHIBITED_NETWORKS
from .routing_target import IpAddress, parse_ip, split_colon_port

_MAX_U16 = 65535
_MAX_U32 = 2**32 - 1
_MAX_U64 = 2**64 - 1

# The name KumoMTA gives the source (and the one-source pool) used when no pool is named.
UNSPECIFIED = "unspecified"
DEFAULT_EGRESS_TTL = timedelta(seconds=60)


class EgressConfigError(ValueError):
    """An egress path config, source or pool with an unknown key or a bad value."""


class Tls(enum.Enum):
    OPPORTUNISTIC = "Opportunistic"
    OPPORTUNISTIC_INSECURE = "OpportunisticInsecure"
    REQUIRED = "Required"
    REQUIRED_INSECURE = "RequiredInsecure"
    DISABLED = "Disabled"

    @property
    def allows_insecure(self) -> bool:
        return self in (Tls.OPPORTUNISTIC_INSECURE, Tls.REQUIRED_INSECURE)

    @property
    def is_opportunistic(self) -> bool:
        return self in (Tls.OPPORTUNISTIC, Tls.OPPORTUNISTIC_INSECURE)


class IpLookupStrategy(enum.Enum):
    IPV4_ONLY = "Ipv4Only"
    IPV6_ONLY = "Ipv6Only"
    IPV4_AND_IPV6 = "Ipv4AndIpv6"
    IPV6_THEN_IPV4 = "Ipv6ThenIpv4"
    IPV4_THEN_IPV6 = "Ipv4ThenIpv6"


class ConfigRefreshStrategy(enum.Enum):
    TTL = "Ttl"
    EPOCH = "Epoch"


class WakeupStrategy(enum.Enum):
    AGGRESSIVE = "Aggressive"
    RELAXED = "Relaxed"


class MemoryReductionPolicy(enum.Enum):
    SHRINK_DATA_AND_META = "ShrinkDataAndMeta"
    SHRINK_DATA = "ShrinkData"
    NO_SHRINK = "NoShrink"


class ReconnectStrategy(enum.Enum):
    TERMINATE_SESSION = "TerminateSession"
    RECONNECT_SAME_HOST = "ReconnectSameHost"
    CONNECT_NEXT_HOST = "ConnectNextHost"


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
            if value < 1 or value > _MAX_U64:
                raise EgressConfigError(f"limit must be 1 or larger, got {value}")
            return cls(value)
        if not isinstance(value, str):
            raise EgressConfigError(f"expected a number or a string limit, got {value!r}")
        text = value
        force_local = text.startswith("local:")
        if force_local:
            text = text[len("local:") :]
        digits = text.replace("_", "").replace(",", "")
        if not digits.isascii() or not digits.isdigit() or int(digits) > _MAX_U64:
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


def _key_source(value: object) -> object:
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


def _redact_key_source(value: object) -> object:
    if isinstance(value, Mapping):
        return {
            key: REDACTED if key in ("key_data", "vault_token") else item
            for key, item in value.items()
        }
    return value


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise EgressConfigError(f"expected true or false, got {value!r}")
    return value


def _unsigned(maximum: int) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
            raise EgressConfigError(f"expected a whole number from 0 to {maximum}, got {value!r}")
        return value

    return parse


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise EgressConfigError(f"expected a string, got {value!r}")
    return value


def _duration(value: object) -> timedelta:
    try:
        return parse_duration(value)
    except DurationError as err:
        raise EgressConfigError(str(err)) from err


def _throttle(value: object) -> Rate:
    if not isinstance(value, str):
        raise EgressConfigError(f"expected a throttle like '100/s' or '10/min', got {value!r}")
    try:
        return Rate.parse(value)
    except RateError as err:
        raise EgressConfigError(str(err)) from err


E = TypeVar("E", bound=enum.Enum)


def _choice(kind: type[E]) -> Callable[[object], E]:
    def parse(value: object) -> E:
        for member in kind:
            if member.value == value:
                return member
        allowed = ", ".join(str(member.value) for member in kind)
        raise EgressConfigError(f"expected one of {allowed}; got {value!r}")

    return parse


V = TypeVar("V")


def _named(parse_item: Callable[[object], V]) -> Callable[[object], tuple[tuple[str, V], ...]]:
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


def _optional(parse_item: Callable[[object], V]) -> Callable[[object], V | None]:
    def parse(value: object) -> V | None:
        return None if value is None else parse_item(value)

    return parse


def _strings(value: object) -> tuple[str, ...]:
    if isinstance(value, Mapping) and not value:
        return ()
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise EgressConfigError(f"expected a list of strings, got {value!r}")
    return tuple(_string(item) for item in value)


_SECONDS = timedelta(seconds=1)


@dataclass(frozen=True)
class EgressPathConfig:
    """How traffic from one egress source to one site behaves (`kumo.make_egress_path`)."""

    connection_limit: LimitSpec = LimitSpec(32)
    additional_connection_limits: tuple[tuple[str, LimitSpec], ...] = ()
    enable_tls: Tls = Tls.OPPORTUNISTIC
    enable_mta_sts: bool = True
    enable_dane: bool = False
    enable_pipelining: bool = True
    enable_rset: bool = True
    tls_prefer_openssl: bool = False
    tls_certificate: object = None
    tls_private_key: object = None
    openssl_cipher_list: str | None = None
    openssl_cipher_suites: str | None = None
    openssl_options: str | None = None
    rustls_cipher_suites: tuple[str, ...] = ()
    connect_timeout: timedelta = 60 * _SECONDS
    banner_timeout: timedelta = 60 * _SECONDS
    ehlo_timeout: timedelta = 300 * _SECONDS
    mail_from_timeout: timedelta = 300 * _SECONDS
    rcpt_to_timeout: timedelta = 300 * _SECONDS
    data_timeout: timedelta = 300 * _SECONDS
    data_dot_timeout: timedelta = 300 * _SECONDS
    rset_timeout: timedelta = 5 * _SECONDS
    idle_timeout: timedelta = 5 * _SECONDS
    starttls_timeout: timedelta = 5 * _SECONDS
    auth_timeout: timedelta = 60 * _SECONDS
    system_shutdown_timeout: timedelta | None = None
    max_ready: int = 1024
    consecutive_connection_failures_before_delay: int = 100
    smtp_port: int = 25
    smtp_auth_plain_username: str | None = None
    smtp_auth_plain_password: object = None
    allow_smtp_auth_plain_without_tls: bool = False
    allow_smtp_auth_plain_without_valid_certificate: bool = False
    max_message_rate: Rate | None = None
    additional_message_rate_throttles: tuple[tuple[str, Rate], ...] = ()
    source_selection_rate: Rate | None = None
    additional_source_selection_rates: tuple[tuple[str, Rate], ...] = ()
    max_connection_rate: Rate | None = None
    max_deliveries_per_connection: int = 1024
    max_recipients_per_batch: int = 100
    prohibited_hosts: CidrSet = DEFAULT_PROHIBITED_HOSTS
    skip_hosts: CidrSet = CidrSet()
    ip_lookup_strategy: IpLookupStrategy = IpLookupStrategy.IPV4_AND_IPV6
    ehlo_domain: str | None = None
    aggressive_connection_opening: bool = False
    refresh_interval: timedelta = 60 * _SECONDS
    refresh_strategy: ConfigRefreshStrategy = ConfigRefreshStrategy.TTL
    dispatcher_wakeup_strategy: WakeupStrategy = WakeupStrategy.AGGRESSIVE
    maintainer_wakeup_strategy: WakeupStrategy = WakeupStrategy.AGGRESSIVE
    provider_name: str | None = None
    remember_broken_tls: timedelta | None = None
    opportunistic_tls_reconnect_on_failed_handshake: bool = False
    use_lmtp: bool = False
    reconnect_strategy: ReconnectStrategy = ReconnectStrategy.CONNECT_NEXT_HOST
    readyq_pool_name: str | None = None
    low_memory_reduction_policy: MemoryReductionPolicy = MemoryReductionPolicy.SHRINK_DATA_AND_META
    no_memory_reduction_policy: MemoryReductionPolicy = MemoryReductionPolicy.SHRINK_DATA_AND_META
    try_next_host_on_transport_error: bool = False
    ignore_8bit_checks: bool = False
    dispatcher_progress_watchdog_timeout: timedelta | None = None

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> EgressPathConfig:
        """A config from KumoMTA's fields; absent fields keep their defaults."""
        return _from_mapping(cls(), mapping, _PATH_FIELD_PARSERS, "egress path")

    def to_mapping(self, *, redact: bool = False) -> dict[str, Any]:
        """Every field in the form `from_mapping` reads (durations as seconds). `redact`
        hides secrets given inline (key_data, vault_token), for reports."""
        return {
            item.name: _json_value(item.name, getattr(self, item.name), redact)
            for item in fields(self)
        }


_OPTIONAL_DURATIONS = frozenset(
    {"system_shutdown_timeout", "remember_broken_tls", "dispatcher_progress_watchdog_timeout"}
)
_KEY_SOURCES = frozenset(
    {"tls_certificate", "tls_private_key", "smtp_auth_plain_password", "socks5_proxy_password"}
)


def _path_field_parser(name: str, default: object) -> Callable[[object], object]:
    if name in _KEY_SOURCES:
        return _key_source
    if name in _OPTIONAL_DURATIONS:
        return _optional(_duration)
    if name == "rustls_cipher_suites":
        return _strings
    if name == "additional_connection_limits":
        return _named(LimitSpec.parse)
    if name.startswith("additional_"):
        return _named(_throttle)
    if name in ("max_message_rate", "source_selection_rate", "max_connection_rate"):
        return _optional(_throttle)
    if name == "smtp_port":
        return _unsigned(_MAX_U16)
    by_type: dict[type, Callable[[object], object]] = {
        LimitSpec: LimitSpec.parse,
        bool: _boolean,
        int: _unsigned(_MAX_U64),
        timedelta: _duration,
        CidrSet: CidrSet.parse,
    }
    if isinstance(default, enum.Enum):
        return _choice(type(default))
    if default is None:
        return _optional(_string)
    return by_type[type(default)]


_PATH_FIELD_PARSERS: dict[str, Callable[[object], object]] = {
    item.name: _path_field_parser(item.name, getattr(EgressPathConfig(), item.name))
    for item in fields(EgressPathConfig)
}

T = TypeVar("T")


def _from_mapping(
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
            raise EgressConfigError(f"{what}: unknown field {key!r}{_suggestion(key, parsers)}")
        if value is None:
            continue
        try:
            changes[key] = parse(value)
        except EgressConfigError as err:
            raise EgressConfigError(f"{what}: bad value for field {key!r}: {err}") from err
    return replace(base, **changes)  # type: ignore[type-var]


def _suggestion(key: object, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(key), sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _json_value(name: str, value: object, redact: bool) -> object:
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
    if name in _KEY_SOURCES:
        return _redact_key_source(value) if redact else value
    if isinstance(value, tuple):
        if name.startswith("additional_"):
            return {key: _json_value(name, item, redact) for key, item in value}
        return [_json_value(name, item, redact) for item in value]
    if isinstance(value, SuspendOnFailure):
        return {"trigger": value.trigger, "duration": duration_to_json(value.duration)}
    raise TypeError(f"{name}: no JSON form for {value!r}")  # pragma: no cover


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
        return cls(trigger, _duration(value["duration"]))


def _ip_address(value: object) -> IpAddress:
    ip = parse_ip(value) if isinstance(value, str) else None
    if ip is None:
        raise EgressConfigError(f"expected an IP address, got {value!r}")
    return ip


def _host_port(value: object) -> str:
    """`host:port` or `[ipv6]:port` (a proxy server)."""
    text = _string(value)
    host, port = split_colon_port(text)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if port is None or not host or any(char.isspace() for char in host):
        raise EgressConfigError(f"expected host:port, got {value!r}")
    return text


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
        source = _from_mapping(cls(name), known, _SOURCE_PARSERS, f"egress source {name!r}")
        for key, value in mapping.items():
            if key in _SOURCE_PARSERS:
                continue
            check = _UNSUPPORTED_SOURCE_PARSERS.get(key) if isinstance(key, str) else None
            if check is None:
                raise EgressConfigError(
                    f"egress source {name!r}: unknown field {key!r}"
                    f"{_suggestion(key, [*_SOURCE_PARSERS, *_UNSUPPORTED_SOURCE_PARSERS])}"
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
            item.name: _json_value(item.name, getattr(self, item.name), False)
            for item in fields(self)
        }


_SOURCE_PARSERS: dict[str, Callable[[object], object]] = {
    "name": _string,
    "ehlo_domain": _optional(_string),
    "source_address": _ip_address,
    "remote_port": _unsigned(_MAX_U16),
    "ttl": _duration,
}
_UNSUPPORTED_SOURCE_PARSERS: dict[str, Callable[[object], object]] = {
    "ha_proxy_server": _host_port,
    "ha_proxy_source_address": _ip_address,
    "socks5_proxy_server": _host_port,
    "socks5_proxy_source_address": _ip_address,
    "socks5_proxy_username": _string,
    "socks5_proxy_password": _key_source,
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
        return _from_mapping(cls(name), mapping, _POOL_PARSERS, f"egress pool {name!r}")

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
            weight = _unsigned(_MAX_U32)(weight)
        except EgressConfigError as err:
            raise EgressConfigError(f"entry {position} ({entry_name!r}): weight: {err}") from err
        entries.append(EgressPoolEntry(entry_name, weight))
    return tuple(entries)


_POOL_PARSERS: dict[str, Callable[[object], object]] = {
    "name": _string,
    "entries": _pool_entries,
    "ttl": _duration,
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
