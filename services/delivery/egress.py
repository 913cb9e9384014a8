"""The egress of each delivery, as KumoMTA resolves it: the queue config's `egress_pool`
(get_egress_pool), the pool's next source by weighted round-robin (get_egress_source), and
the egress path config for that source and the destination site (get_egress_path_config).

Each answer is cached the way KumoMTA caches it: pools and sources for their `ttl`, a path
config per (source, site) for its `refresh_interval` (`refresh_strategy = "Ttl"`) or, with
`"Epoch"`, until the policy changes, which for delivery means until the process restarts
(it loads its policy once). A policy error or `kumo.reject` in any of these events holds the
message as a transient failure (`EgressUnavailable`), never a default: mail the policy
smarthosts must not leak to the public MX because its egress could not be resolved.

Where the policy says nothing (no get_egress_path_config handler, the built-in
"unspecified" source) delivery's settings are the defaults (`EgressDefaults`).
"""

from __future__ import annotations

import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import timedelta
from pathlib import Path
from typing import Generic, TypeVar

from ..core.domain.durations import Rate
from ..core.domain.egress import ConfigRefreshStrategy, EgressPathConfig, Tls
from ..core.domain.egress_source import (
    UNSPECIFIED,
    EgressPool,
    EgressSource,
    RoundRobinState,
    next_source,
)
from ..core.domain.egress_values import LimitSpec
from ..core.domain.routing_target import ip_text, parse_ip
from ..core.domain.smtp_reply import SmtpResponse
from ..core.domain.token_bucket import MessageRate
from ..core.policy import Policy, PolicyRuntimeError
from ..core.policy.egress_events import builtin_pool, no_handler
from ..core.runtime.settings import DeliverySettings
from .planning import AddressRules
from .pool import PoolLimits
from .smtp_session import PlainAuth, SessionOptions, SessionTimeouts
from .tls import ClientCertificate, TlsMode, client_context

log = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")

# Cached answers kept at most (per kind): a busy MTA talks to very many sites.
MAX_CACHED = 10_000


class EgressUnavailable(Exception):
    """The policy could not say how to send this message: hold it and try again later."""

    def __init__(self, event: str, name: str, reason: str) -> None:
        super().__init__(f"{event}({name}): {reason}")
        self.response = SmtpResponse.with_code(
            451, (4, 3, 0), f"egress not resolved: {event}({name}) failed: {reason}"
        )


class EgressPathUnusable(ValueError):
    """A path config delivery cannot use: a client certificate or AUTH password that cannot
    be read (a missing file, not PEM, not UTF-8)."""


def key_source_bytes(field_name: str, source: object) -> bytes:
    """The secret a key source holds: a file's bytes, or the inline key_data (the only key
    sources make_egress_path lets through for delivery's fields)."""
    if isinstance(source, Mapping) and isinstance(source.get("key_data"), str):
        return str(source["key_data"]).encode("utf-8")
    if isinstance(source, str):
        try:
            return Path(source).read_bytes()
        except OSError as err:
            raise EgressPathUnusable(
                f"{field_name}: cannot read {source}: {err.strerror or err}"
            ) from None
    raise EgressPathUnusable(f"{field_name}: not a file name or key_data")


def _client_certificate(config: EgressPathConfig) -> ClientCertificate | None:
    if config.tls_certificate is None or config.tls_private_key is None:
        return None
    return ClientCertificate(
        key_source_bytes("tls_certificate", config.tls_certificate),
        key_source_bytes("tls_private_key", config.tls_private_key),
    )


def _plain_auth(config: EgressPathConfig) -> PlainAuth | None:
    if config.smtp_auth_plain_username is None:
        return None
    password = ""
    if config.smtp_auth_plain_password is not None:
        secret = key_source_bytes("smtp_auth_plain_password", config.smtp_auth_plain_password)
        try:
            # As KumoMTA: the key source's bytes as they are (a file's final newline too).
            password = secret.decode("utf-8")
        except UnicodeDecodeError:
            raise EgressPathUnusable("smtp_auth_plain_password is not UTF-8") from None
    return PlainAuth(
        config.smtp_auth_plain_username,
        password,
        allow_without_tls=config.allow_smtp_auth_plain_without_tls,
        allow_without_valid_certificate=config.allow_smtp_auth_plain_without_valid_certificate,
    )


@dataclass(frozen=True)
class EgressDefaults:
    """What delivery's settings give where the policy gives nothing."""

    # The path config when the policy has no get_egress_path_config handler.
    path: EgressPathConfig
    # The built-in "unspecified" source: the settings' source_address and ehlo_name.
    source: EgressSource
    # EHLO name when neither the path config nor the source names one.
    ehlo_name: str
    # Extra trust roots for validating TLS modes (a private smarthost's CA).
    tls_ca_file: Path | None = None
    # Deliver to prohibited_hosts anyway (tests and local development only).
    allow_loopback: bool = False

    @classmethod
    def from_settings(cls, settings: DeliverySettings) -> EgressDefaults:
        command = timedelta(seconds=settings.command_timeout_seconds)
        path = EgressPathConfig(
            connection_limit=LimitSpec(settings.connection_limit),
            enable_tls=Tls(TlsMode.parse(settings.tls_mode).value),
            enable_pipelining=settings.enable_pipelining,
            connect_timeout=timedelta(seconds=settings.connect_timeout_seconds),
            banner_timeout=timedelta(seconds=settings.banner_timeout_seconds),
            ehlo_timeout=command,
            mail_from_timeout=command,
            rcpt_to_timeout=command,
            data_timeout=command,
            data_dot_timeout=command,
            rset_timeout=command,
            starttls_timeout=command,
            idle_timeout=timedelta(seconds=settings.idle_timeout_seconds),
            max_deliveries_per_connection=settings.max_deliveries_per_connection,
            smtp_port=settings.smtp_port,
        )
        address = settings.source_address
        source = EgressSource(
            UNSPECIFIED,
            ehlo_domain=settings.ehlo_name,
            source_address=None if address is None else parse_ip(address),
        )
        return cls(
            path=path,
            source=source,
            ehlo_name=settings.ehlo_name or socket.getfqdn(),
            tls_ca_file=settings.tls_ca_file,
            allow_loopback=settings.allow_loopback,
        )


@dataclass(frozen=True)
class EgressChoice:
    """The pool a message's queue names and the source picked from it for this attempt."""

    pool: str
    source: EgressSource


class ExpiringCache(Generic[K, V]):
    """At most `capacity` entries, each until its own deadline (monotonic seconds); the
    least recently stored go first when full."""

    def __init__(self, clock: Callable[[], float], capacity: int = MAX_CACHED) -> None:
        self._clock = clock
        self._capacity = capacity
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: K, value: V, seconds: float) -> None:
        self._entries.pop(key, None)
        self._entries[key] = (self._clock() + seconds, value)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True)
class EgressPath:
    """How a connection from `source` to one site behaves: the policy's path config, and
    what delivery derives from it (once per refresh, not per message)."""

    source: EgressSource
    config: EgressPathConfig
    limits: PoolLimits
    options: SessionOptions
    rules: AddressRules

    @classmethod
    def derive(
        cls, source: EgressSource, config: EgressPathConfig, defaults: EgressDefaults
    ) -> EgressPath:
        def seconds(value: timedelta) -> float:
            return value.total_seconds()

        timeouts = SessionTimeouts(
            connect=seconds(config.connect_timeout),
            banner=seconds(config.banner_timeout),
            command=seconds(config.data_dot_timeout),
            ehlo=seconds(config.ehlo_timeout),
            starttls=seconds(config.starttls_timeout),
            rset=seconds(config.rset_timeout),
            mail_from=seconds(config.mail_from_timeout),
            rcpt_to=seconds(config.rcpt_to_timeout),
            data=seconds(config.data_timeout),
            data_dot=seconds(config.data_dot_timeout),
            auth=seconds(config.auth_timeout),
        )
        address = source.source_address
        tls_mode = TlsMode(config.enable_tls.value)
        certificate = _client_certificate(config)
        try:
            # Built once per path refresh, not per connection.
            tls_context = (
                None
                if certificate is None
                else client_context(tls_mode, defaults.tls_ca_file, certificate)
            )
        except ValueError as err:
            raise EgressPathUnusable(str(err)) from None
        options = SessionOptions(
            # KumoMTA: the path's ehlo_domain takes precedence over the source's.
            ehlo_name=config.ehlo_domain or source.ehlo_domain or defaults.ehlo_name,
            tls_mode=tls_mode,
            timeouts=timeouts,
            tls_ca_file=defaults.tls_ca_file,
            source_address=None if address is None else ip_text(address),
            pipelining=config.enable_pipelining,
            lmtp=config.use_lmtp,
            tls_context=tls_context,
            auth=_plain_auth(config),
        )
        limits = PoolLimits(
            connection_limit=config.connection_limit.limit,
            max_deliveries_per_connection=max(1, config.max_deliveries_per_connection),
            idle_timeout=seconds(config.idle_timeout),
            message_rate=_rate(config.max_message_rate),
            connection_rate=_rate(config.max_connection_rate),
        )
        rules = AddressRules(
            # KumoMTA: the source's remote_port takes precedence over smtp_port.
            default_port=source.remote_port or config.smtp_port,
            prohibited=config.prohibited_hosts.networks,
            skip=config.skip_hosts.networks,
            allow_prohibited=defaults.allow_loopback,
        )
        return cls(source, config, limits, options, rules)


def _rate(rate: Rate | None) -> MessageRate | None:
    return None if rate is None else MessageRate.from_rate(rate)


# The path config fields delivery applies (EgressPath.derive, the resolver's cache); any
# other one a policy sets is logged once as not applied.
APPLIED_PATH_FIELDS = frozenset(
    {
        "connection_limit",
        "enable_tls",
        "enable_pipelining",
        "connect_timeout",
        "banner_timeout",
        "ehlo_timeout",
        "starttls_timeout",
        "mail_from_timeout",
        "rcpt_to_timeout",
        "data_timeout",
        "data_dot_timeout",
        "rset_timeout",
        "idle_timeout",
        "max_deliveries_per_connection",
        "smtp_port",
        "ehlo_domain",
        "max_message_rate",
        "max_connection_rate",
        "prohibited_hosts",
        "skip_hosts",
        "refresh_interval",
        "refresh_strategy",
        "tls_certificate",
        "tls_private_key",
        "smtp_auth_plain_username",
        "smtp_auth_plain_password",
        "allow_smtp_auth_plain_without_tls",
        "allow_smtp_auth_plain_without_valid_certificate",
        "auth_timeout",
        "use_lmtp",
        # Attempt (Deliverer._finish) resolves the MX hosts' addresses with it.
        "ip_lookup_strategy",
    }
)
UNAPPLIED_PATH_FIELDS = frozenset(f.name for f in fields(EgressPathConfig)) - APPLIED_PATH_FIELDS
_KUMO_DEFAULTS = EgressPathConfig()


# "Epoch" path configs stay until the policy changes: a process-long deadline.
FOREVER_SECONDS = 10.0 * 365 * 24 * 3600


class EgressResolver:
    """Asks the policy for pools, sources and path configs, and caches the answers."""

    def __init__(
        self,
        policy: Policy | None,
        defaults: EgressDefaults,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policy = policy
        self.defaults = defaults
        self._pools: ExpiringCache[str, EgressPool] = ExpiringCache(clock)
        self._sources: ExpiringCache[str, EgressSource] = ExpiringCache(clock)
        self._paths: ExpiringCache[tuple[str, str], EgressPath] = ExpiringCache(clock)
        self._round_robin: dict[str, RoundRobinState] = {}
        self._warned: set[str] = set()

    def choose_source(self, pool_name: str | None) -> EgressChoice:
        """The next source of the queue's pool. Raises EgressUnavailable."""
        pool = self._pool(UNSPECIFIED if pool_name is None else pool_name)
        state = self._round_robin.get(pool.name, RoundRobinState())
        step = next_source(pool.entries, state)
        if step is None:
            raise EgressUnavailable(
                "get_egress_pool", pool.name, "the pool has no source with a weight above 0"
            )
        source_name, self._round_robin[pool.name] = step
        return EgressChoice(pool.name, self._source(source_name))

    def path(self, routing_domain: str, source: EgressSource, site: str) -> EgressPath:
        """The egress path from `source` to `site`. Raises EgressUnavailable."""
        key = (source.name, site)
        cached = self._paths.get(key)
        if cached is not None:
            return cached
        if self._policy is None:
            config = self.defaults.path
        else:
            try:
                config = self._policy.get_egress_path_config(
                    routing_domain, source.name, site, default=self.defaults.path
                )
            except PolicyRuntimeError as err:
                raise self._failed("get_egress_path_config", f"{source.name}, {site}", err) from err
        seconds = (
            FOREVER_SECONDS
            if config.refresh_strategy is ConfigRefreshStrategy.EPOCH
            else config.refresh_interval.total_seconds()
        )
        try:
            path = EgressPath.derive(source, config, self.defaults)
        except EgressPathUnusable as err:
            log.warning(
                "egress path unusable: message held for retry",
                extra={"source": source.name, "site": site, "error": str(err)},
            )
            where = f"{source.name}, {site}"
            raise EgressUnavailable("get_egress_path_config", where, str(err)) from None
        self._warn_unapplied(config)
        self._paths.put(key, path, seconds)
        return path

    def _warn_unapplied(self, config: EgressPathConfig) -> None:
        """One warning per field a policy sets that delivery does not apply yet: accepted
        (KumoMTA policies set them), never silently."""
        for name in UNAPPLIED_PATH_FIELDS - self._warned:
            if getattr(config, name) != getattr(_KUMO_DEFAULTS, name):
                self._warned.add(name)
                log.warning(
                    "egress path field not applied by relaystream's delivery yet",
                    extra={"field": name},
                )

    def _pool(self, name: str) -> EgressPool:
        cached = self._pools.get(name)
        if cached is not None:
            return cached
        try:
            pool = self._ask_pool(name)
        except PolicyRuntimeError as err:
            raise self._failed("get_egress_pool", name, err) from err
        self._pools.put(name, pool, pool.ttl.total_seconds())
        return pool

    def _source(self, name: str) -> EgressSource:
        if name == UNSPECIFIED:
            return self.defaults.source
        cached = self._sources.get(name)
        if cached is not None:
            return cached
        try:
            if self._policy is None:
                raise no_handler("get_egress_source", name)
            source = self._policy.get_egress_source(name)
        except PolicyRuntimeError as err:
            raise self._failed("get_egress_source", name, err) from err
        self._sources.put(name, source, source.ttl.total_seconds())
        return source

    def _ask_pool(self, name: str) -> EgressPool:
        if self._policy is not None:
            return self._policy.get_egress_pool(name)
        # Without a policy only KumoMTA's built-in "unspecified" pool exists.
        pool = builtin_pool(name)
        if pool is None:
            raise no_handler("get_egress_pool", name)
        return pool

    @staticmethod
    def _failed(event: str, name: str, err: PolicyRuntimeError) -> EgressUnavailable:
        log.warning(
            "egress policy event failed: message held for retry",
            extra={"event": event, "argument": name, "error": str(err)},
        )
        return EgressUnavailable(event, name, str(err))
