"""KumoMTA's egress path config: how mail travels from one egress source to one site
(`kumo.make_egress_path`, the result of `get_egress_path_config`), with every field of
KumoMTA's `EgressPathConfig` and its default. Sources and pools: egress_source.py."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import Any

from .durations import Rate
from .egress_values import (
    DEFAULT_PROHIBITED_HOSTS,
    MAX_U16,
    MAX_U64,
    CidrSet,
    EgressConfigError,
    LimitSpec,
    boolean,
    choice,
    duration,
    fields_from_mapping,
    json_value,
    key_source,
    named,
    optional,
    string,
    strings,
    throttle,
    unsigned,
)


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


_SECONDS = timedelta(seconds=1)


DEFAULT_CONNECTION_LIMIT = LimitSpec(32)
NO_HOSTS = CidrSet()


@dataclass(frozen=True)
class EgressPathConfig:
    """How traffic from one egress source to one site behaves (`kumo.make_egress_path`)."""

    connection_limit: LimitSpec = DEFAULT_CONNECTION_LIMIT
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
    skip_hosts: CidrSet = NO_HOSTS
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
        config = fields_from_mapping(cls(), mapping, _PATH_FIELD_PARSERS, "egress path")
        if (config.tls_certificate is None) != (config.tls_private_key is None):
            # KumoMTA presents no certificate then; relaystream never ignores a field.
            raise EgressConfigError(
                "egress path: tls_certificate and tls_private_key go together: "
                "a client certificate needs its key"
            )
        return config

    def to_mapping(self, *, redact: bool = False) -> dict[str, Any]:
        """Every field in the form `from_mapping` reads (durations as seconds). `redact`
        hides secrets given inline (key_data, vault_token), for reports."""
        return {
            item.name: json_value(item.name, getattr(self, item.name), redact)
            for item in fields(self)
        }


_OPTIONAL_DURATIONS = frozenset(
    {"system_shutdown_timeout", "remember_broken_tls", "dispatcher_progress_watchdog_timeout"}
)
# The secrets delivery reads (a client certificate, its key, the AUTH password).
_DELIVERY_KEY_SOURCES = frozenset(
    {"tls_certificate", "tls_private_key", "smtp_auth_plain_password"}
)


def local_key_source(value: object) -> object:
    """A key source delivery can read itself: a file name or {key_data = ...}; a Vault
    location or an event is refused (relaystream fetches from no secret store)."""
    checked = key_source(value)
    if isinstance(checked, Mapping) and "key_data" not in checked:
        kind = "HashiCorp Vault" if "vault_mount" in checked else "an event (event_name)"
        raise EgressConfigError(
            f"keys from {kind} are not available in relaystream: "
            "give a file name or {key_data = '...'}"
        )
    return checked


def _path_field_parser(name: str, default: object) -> Callable[[object], object]:
    if name in _DELIVERY_KEY_SOURCES:
        return local_key_source
    if name in _OPTIONAL_DURATIONS:
        return optional(duration)
    if name == "rustls_cipher_suites":
        return strings
    if name == "additional_connection_limits":
        return named(LimitSpec.parse)
    if name.startswith("additional_"):
        return named(throttle)
    if name in ("max_message_rate", "source_selection_rate", "max_connection_rate"):
        return optional(throttle)
    if name == "smtp_port":
        return unsigned(MAX_U16)
    by_type: dict[type, Callable[[object], object]] = {
        LimitSpec: LimitSpec.parse,
        bool: boolean,
        int: unsigned(MAX_U64),
        timedelta: duration,
        CidrSet: CidrSet.parse,
    }
    if isinstance(default, enum.Enum):
        return choice(type(default))
    if default is None:
        return optional(string)
    return by_type[type(default)]


_PATH_FIELD_PARSERS: dict[str, Callable[[object], object]] = {
    item.name: _path_field_parser(item.name, getattr(EgressPathConfig(), item.name))
    for item in fields(EgressPathConfig)
}
