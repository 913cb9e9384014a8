"""Service settings: one table of names, read from a file and the environment.

Every setting is a field of one of the section dataclasses below; the field's metadata holds its
parser and its documentation, so this module is the one place that names settings. A setting
`x` of section `s` is the key `s.x` in the file (YAML or TOML, a mapping per section) and the
environment variable `RELAYSTREAM_S_X`; the runtime section has no prefix (`kafka_bootstrap` is
`RELAYSTREAM_KAFKA_BOOTSTRAP`). The environment overrides the file, the file overrides the
defaults. `RELAYSTREAM_CONFIG` names the file. Lists are YAML/TOML lists in the file and
comma-separated in the environment; an empty variable clears an optional setting.

`settings_table()` lists every setting (for docs and `relaystream settings`);
`known_environment_variables()` is the set of names the manifests may use.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import socket
import tomllib
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import yaml

ENV_PREFIX = "RELAYSTREAM_"
CONFIG_FILE_VARIABLE = "RELAYSTREAM_CONFIG"

# Kafka's record batch codecs (the producer checks that the one chosen is installed).
KAFKA_COMPRESSION_CODECS = ("none", "gzip", "snappy", "lz4", "zstd")

T = TypeVar("T")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SettingsError(ValueError):
    """A setting is missing, unknown or malformed; the message names it and says why."""


class _Invalid(Exception):
    """Raised by a parser: `expected` says what a valid value looks like."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


@dataclass(frozen=True)
class HostPort:
    """A host (name or IP literal) and a TCP/UDP port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


# Parsers: take what YAML/TOML or the environment gives (str, int, bool, list) and return the
# typed value, or raise _Invalid saying what was expected.


def _string(value: object) -> str:
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise _Invalid("a non-empty string")


def _optional_string(value: object) -> str | None:
    if value is None or value == "":
        return None
    return _string(value)


def _integer(low: int, high: int) -> Callable[[object], int]:
    def parse(value: object) -> int:
        expected = f"an integer {low}-{high}"
        if isinstance(value, bool):
            raise _Invalid(expected)
        if isinstance(value, int):
            number = value
        elif isinstance(value, str):
            try:
                number = int(value.strip())
            except ValueError:
                raise _Invalid(expected) from None
        else:
            raise _Invalid(expected)
        if not low <= number <= high:
            raise _Invalid(expected)
        return number

    return parse


_port = _integer(1, 65535)


def _seconds(value: object) -> float:
    expected = "a number of seconds >= 0"
    if isinstance(value, bool):
        raise _Invalid(expected)
    try:
        number = float(value) if isinstance(value, int | float | str) else -1.0
    except ValueError:
        raise _Invalid(expected) from None
    if not number >= 0:  # also rejects NaN
        raise _Invalid(expected)
    return number


def _positive_seconds(value: object) -> float:
    number = _seconds(value)
    if number == 0:
        raise _Invalid("a number of seconds > 0")
    return number


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
    raise _Invalid("true or false")


def _items(value: object) -> list[object]:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, list | tuple):
        return list(value)
    raise _Invalid("a list (comma-separated in the environment)")


def _user_password(value: object) -> str:
    text = _string(value)
    user, colon, password = text.partition(":")
    if not colon or not user or not password:
        raise _Invalid("user:password")
    return text


def _list_of(item: Callable[[object], T], expected: str) -> Callable[[object], tuple[T, ...]]:
    def parse(value: object) -> tuple[T, ...]:
        if value is None:
            return ()
        try:
            return tuple(item(element) for element in _items(value))
        except _Invalid:
            raise _Invalid(f"a list of {expected}") from None

    return parse


def _host_port(default_port: int | None) -> Callable[[object], HostPort]:
    """`host:port`, `[v6]:port`, or (with a default port) a bare host or IP literal."""

    def parse(value: object) -> HostPort:
        expected = "host:port" if default_port is None else "host or host:port"
        if not isinstance(value, str) or not value.strip():
            raise _Invalid(expected)
        text = value.strip()
        host, port_text = text, None
        if text.startswith("["):
            host, sep, rest = text[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")):
                raise _Invalid(expected)
            port_text = rest[1:] or None
        elif text.count(":") == 1:
            host, port_text = text.split(":")
        elif text.count(":") > 1:
            host = text  # a bare IPv6 literal
        if not host:
            raise _Invalid(expected)
        if port_text is None:
            if default_port is None:
                raise _Invalid(expected)
            return HostPort(host, default_port)
        try:
            return HostPort(host, _port(port_text))
        except _Invalid:
            raise _Invalid(f"{expected} with a port 1-65535") from None

    return parse


def _network(value: object) -> Network:
    try:
        return ipaddress.ip_network(str(value).strip(), strict=False)
    except ValueError:
        raise _Invalid("an IP network such as 10.0.0.0/8") from None


def _optional_path(value: object) -> Path | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return Path(value.strip())
    raise _Invalid("a file path")


def _path(value: object) -> Path:
    if isinstance(value, str) and value.strip():
        return Path(value.strip())
    raise _Invalid("a file path")


def _optional_uuid(value: object) -> str | None:
    if value is None or value == "":
        return None
    try:
        return str(uuid.UUID(str(value).strip()))
    except ValueError:
        raise _Invalid("a UUID such as 557f3ad4-2c8c-11ee-976e-782d7e12e173") from None


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _prefix(value: object) -> str:
    return "" if value is None or value == "" else _string(value)


class InvalidLineEndings(Enum):
    """What the SMTP listener does with a bare LF or CR (KumoMTA's `invalid_line_endings`;
    Postfix's `smtpd_forbid_bare_newline` in brackets). Whatever the choice, DATA ends only at
    CRLF.CRLF, so no line ending can smuggle a second message into one DATA."""

    DENY = "Deny"  # (reject, 3.8 `yes`) DATA: 552 5.6.0; a command: 550 5.5.2 and disconnect
    ALLOW = "Allow"  # (no) DATA kept as sent; a command ending in LF is read as if CRLF
    FIX = "Fix"  # (normalize) line endings made CRLF, in DATA and commands


def _invalid_line_endings(value: object) -> InvalidLineEndings:
    for choice in InvalidLineEndings:
        if isinstance(value, str) and value.strip().lower() == choice.value.lower():
            return choice
    raise _Invalid("one of " + ", ".join(choice.value for choice in InvalidLineEndings))


def _one_of(choices: Sequence[str]) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if isinstance(value, str) and value.strip().lower() in choices:
            return value.strip().lower()
        raise _Invalid("one of " + ", ".join(choices))

    return parse


def _log_level(value: object) -> str:
    if isinstance(value, str) and value.strip().upper() in _LOG_LEVELS:
        return value.strip().upper()
    raise _Invalid("one of " + ", ".join(_LOG_LEVELS))


def _about(parse: Callable[[object], Any], doc: str) -> dict[str, object]:
    """A setting's field metadata: how to parse it and what it is for."""
    return {"parse": parse, "doc": doc}


@dataclass(frozen=True)
class RuntimeSettings:
    """What every service needs: Kafka, its HTTP endpoint for probes and metrics, logs."""

    kafka_bootstrap: str = field(
        default="127.0.0.1:9092",
        metadata=_about(_string, "Kafka bootstrap servers, comma-separated host:port"),
    )
    topic_prefix: str = field(
        # The same default as core/kafka/topics.py DEFAULT_PREFIX (runtime may not import kafka;
        # a unit test holds them equal).
        default="relaystream.",
        metadata=_about(
            _prefix,
            "prefix of every topic name, consumer group and transactional id; empty means none",
        ),
    )
    kafka_client_id: str | None = field(
        default=None,
        metadata=_about(_optional_string, "Kafka client id; default: the service name"),
    )
    kafka_group_instance_id: str | None = field(
        default=None,
        metadata=_about(
            _optional_string,
            "static group membership id (e.g. the pod name): a restart within the session "
            "timeout causes no rebalance",
        ),
    )
    kafka_linger_ms: int = field(
        # The same default as core/kafka/producer.py LINGER_MS (a unit test holds them equal).
        default=20,
        metadata=_about(
            _integer(0, 1000),
            "how long the scheduling and delivery producers wait to batch records: larger "
            "means fewer Kafka requests under load, smaller less latency when traffic is light",
        ),
    )
    kafka_compression: str = field(
        default="none",
        metadata=_about(
            _one_of(KAFKA_COMPRESSION_CODECS),
            "codec of the record batches every producer writes (none, gzip, snappy, lz4, zstd; "
            "snappy, lz4 and zstd need the cramjam package): fewer bytes on the broker's disks "
            "and network for more CPU in every service and the broker (README, Performance)",
        ),
    )
    http_bind: HostPort = field(
        default=HostPort("127.0.0.1", 9100),
        metadata=_about(_host_port(None), "address of /healthz, /readyz and /metrics"),
    )
    log_level: str = field(
        default="INFO", metadata=_about(_log_level, "DEBUG, INFO, WARNING, ERROR or CRITICAL")
    )
    shutdown_grace_seconds: float = field(
        default=25.0,
        metadata=_about(
            _seconds,
            "on SIGTERM, how long to finish in-flight work before giving up; keep it below "
            "Kubernetes' terminationGracePeriodSeconds",
        ),
    )
    node_id: str | None = field(
        default=None,
        metadata=_about(
            _optional_uuid,
            "this node's UUID, the `nodeid` of the log records it writes; default: one derived "
            "from the host name (stable for a StatefulSet pod or a host)",
        ),
    )
    bounce_classifier_files: tuple[Path, ...] = field(
        default=(),
        metadata=_about(
            _list_of(_path, "file paths"),
            "bounce classifier rules files (KumoMTA's format, .toml or .json), tried in order "
            "before the built-in rules; as kumo.configure_bounce_classifier{files=...}",
        ),
    )
    bounce_classifier_builtin_rules: bool = field(
        default=True,
        metadata=_about(
            _boolean,
            "classify with relaystream's built-in rules after the files' rules; false: only "
            "the files (KumoMTA's behaviour: no files, every record Uncategorized)",
        ),
    )

    def resolved_node_id(self) -> str:
        """`node_id`, or a UUID derived from the host name when it is not set."""
        return self.node_id or str(uuid.uuid5(uuid.NAMESPACE_DNS, socket.gethostname()))


@dataclass(frozen=True)
class IngestSettings:
    """The ingest service: SMTP and HTTP listeners and what they accept."""

    smtp_bind: str = field(default="127.0.0.1", metadata=_about(_string, "SMTP listener address"))
    smtp_port: int = field(default=2525, metadata=_about(_port, "SMTP listener port"))
    http_bind: str = field(
        default="127.0.0.1", metadata=_about(_string, "HTTP injection API listener address")
    )
    http_port: int = field(default=8025, metadata=_about(_port, "HTTP injection API listener port"))
    relay_networks: tuple[Network, ...] = field(
        default=(ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")),
        metadata=_about(
            _list_of(_network, "IP networks"),
            "client networks allowed to relay without authentication",
        ),
    )
    max_message_size: int = field(
        default=20 * 1024 * 1024,
        metadata=_about(_integer(1, 2**31 - 1), "largest message accepted, in bytes"),
    )
    max_recipients: int = field(
        default=1024, metadata=_about(_integer(1, 1_000_000), "recipients per message")
    )
    max_connections: int = field(
        default=1024, metadata=_about(_integer(1, 1_000_000), "concurrent SMTP sessions")
    )
    tls_cert: Path | None = field(
        default=None, metadata=_about(_optional_path, "PEM certificate for STARTTLS")
    )
    tls_key: Path | None = field(
        default=None, metadata=_about(_optional_path, "PEM private key for STARTTLS")
    )
    api_tokens_file: Path | None = field(
        default=None, metadata=_about(_optional_path, "file of HTTP API bearer tokens, one a line")
    )
    api_tokens: tuple[str, ...] = field(
        default=(),
        metadata=_about(
            _list_of(_string, "tokens"), "HTTP API bearer tokens (prefer a Secret in env)"
        ),
    )
    smtp_users_file: Path | None = field(
        default=None,
        metadata=_about(
            _optional_path,
            "SMTP AUTH users, one 'name:hash' a line (hashes from relaystream.ingest.smtp_users)",
        ),
    )
    smtp_hostname: str | None = field(
        default=None,
        metadata=_about(_optional_string, "name in the SMTP banner and Received:; default FQDN"),
    )
    smtp_invalid_line_endings: InvalidLineEndings = field(
        default=InvalidLineEndings.DENY,
        metadata=_about(
            _invalid_line_endings,
            "bare LF or CR from an SMTP client (KumoMTA's invalid_line_endings): Deny refuses "
            "(Postfix smtpd_forbid_bare_newline=reject), Fix makes them CRLF (=normalize), "
            "Allow keeps DATA as sent (=no); DATA ends only at CRLF.CRLF in every mode",
        ),
    )
    smtp_command_timeout_seconds: float = field(
        default=300.0,
        metadata=_about(_seconds, "close an SMTP session idle this long waiting for a command"),
    )
    policy_queue_seconds: float = field(
        default=10.0,
        metadata=_about(
            _positive_seconds,
            "answer 451 4.3.0 (HTTP: the recipient fails, temporarily) when a policy call of an "
            "SMTP session or HTTP request waited this long for the policy thread",
        ),
    )
    http_max_request_bytes: int = field(
        default=25 * 1024 * 1024,
        metadata=_about(_integer(1024, 2**31 - 1), "largest HTTP injection request body"),
    )
    kafka_ack_timeout_seconds: float = field(
        default=30.0,
        metadata=_about(
            _seconds, "answer 451/503 when Kafka has not acknowledged accepted mail in this time"
        ),
    )
    transactional_id: str | None = field(
        default=None,
        metadata=_about(
            _optional_string,
            "Kafka transactional id of this instance, distinct per process; default: ingest- and "
            "the group instance id or host name",
        ),
    )
    # A batch's MessageAccepted records are held in memory until its transaction commits:
    # up to this many submissions, each times its recipients.
    submit_max_batch_records: int = field(
        default=200,
        metadata=_about(
            _integer(1, 100_000), "submit events converted in one Kafka transaction at most"
        ),
    )

    def validate(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise SettingsError(
                "RELAYSTREAM_INGEST_TLS_CERT and RELAYSTREAM_INGEST_TLS_KEY: set both or neither"
            )


@dataclass(frozen=True)
class RoutingSettings:
    """The routing service."""

    policy_path: Path | None = field(
        default=None,
        metadata=_about(
            _optional_path,
            "the policy (.lua or declarative .yaml): ingest runs its reception events, "
            "routing names queues, scheduling runs get_queue_config",
        ),
    )
    # The same default as core/policy/types.py PolicyLimits.deadline_seconds (runtime may not
    # import policy; a unit test holds them equal).
    policy_deadline_seconds: float = field(
        default=1.0,
        metadata=_about(
            _positive_seconds,
            "wall-clock limit of one Lua policy call (a message's reception handler, "
            "get_queue_config in scheduling too): past it the call fails as a policy error",
        ),
    )
    transactional_id: str | None = field(
        default=None,
        metadata=_about(
            _optional_string,
            "Kafka transactional id of this instance, distinct per process and stable across "
            "its restarts; default: routing- and the group instance id or host name",
        ),
    )
    # Under a backlog a bigger transaction spreads its fixed broker cost (offsets, markers)
    # over more records: 2000 routed 4.7k/s, 500 routed 3.3k/s (devkit/bench/routing_bench.py).
    max_batch_records: int = field(
        default=2_000,
        metadata=_about(
            _integer(1, 100_000), "accepted records routed in one Kafka transaction at most"
        ),
    )


@dataclass(frozen=True)
class SchedulingSettings:
    """The scheduling service."""

    policy_path: Path | None = field(
        default=None,
        metadata=_about(_optional_path, "policy for get_queue_config; default: routing's"),
    )
    tick_interval_seconds: float = field(
        default=1.0, metadata=_about(_seconds, "how often due messages are looked for")
    )
    in_flight_lease_seconds: float = field(
        default=900.0,
        metadata=_about(
            _seconds,
            "a released attempt without an outcome is released again after this long "
            "(also how far back a rebuild reads `attempts`)",
        ),
    )
    admin_api_enabled: bool = field(
        default=True,
        metadata=_about(_boolean, "serve the admin HTTP API (suspend, bounce, rebind, inspect)"),
    )
    admin_api_bind: str = field(
        default="127.0.0.1", metadata=_about(_string, "admin HTTP API listener address")
    )
    admin_api_port: int = field(
        default=8026, metadata=_about(_port, "admin HTTP API listener port")
    )
    admin_api_tokens: tuple[str, ...] = field(
        default=(),
        metadata=_about(
            _list_of(_string, "tokens"),
            "admin HTTP API bearer tokens; a token or a basic user is required when the API "
            "listens beyond loopback (prefer a Secret in env)",
        ),
    )
    admin_api_basic_users: tuple[str, ...] = field(
        default=(),
        metadata=_about(
            _list_of(_user_password, "user:password"),
            "admin HTTP API HTTP Basic credentials, each user:password (prefer a Secret in env)",
        ),
    )
    # KumoMTA's `trusted_hosts`: requests from these networks need no credentials.
    admin_api_trusted_hosts: tuple[Network, ...] = field(
        default=(ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128")),
        metadata=_about(
            _list_of(_network, "IP addresses or CIDR networks"),
            "admin HTTP API clients that need no credentials (KumoMTA's trusted_hosts); "
            "empty: every request authenticates",
        ),
    )

    def validate(self) -> None:
        if self.admin_api_enabled and not (self.admin_api_tokens or self.admin_api_basic_users):
            try:
                loopback = ipaddress.ip_address(self.admin_api_bind).is_loopback
            except ValueError:
                loopback = self.admin_api_bind == "localhost"
            if not loopback:
                raise SettingsError(
                    "RELAYSTREAM_SCHEDULING_ADMIN_API_TOKENS or _BASIC_USERS: required when the "
                    f"admin API listens beyond loopback ({self.admin_api_bind})"
                )


@dataclass(frozen=True)
class DeliverySettings:
    """The delivery service: DNS and SMTP client defaults."""

    policy_path: Path | None = field(
        default=None,
        metadata=_about(
            _optional_path,
            "policy whose init may configure the bounce classifier "
            "(kumo.configure_bounce_classifier); default: routing's",
        ),
    )

    nameservers: tuple[HostPort, ...] = field(
        default=(),
        metadata=_about(
            _list_of(_host_port(53), "host or host:port"),
            "DNS servers for MX lookups; empty: the system resolver",
        ),
    )
    allow_loopback: bool = field(
        default=False,
        metadata=_about(
            _boolean, "allow delivering to loopback addresses (tests and local dev only)"
        ),
    )
    smtp_port: int = field(default=25, metadata=_about(_port, "destination SMTP port"))
    connection_limit: int = field(
        default=32, metadata=_about(_integer(1, 100_000), "default concurrent connections per site")
    )
    consumer_concurrency: int = field(
        default=64, metadata=_about(_integer(1, 100_000), "attempts handled at once")
    )
    max_deliveries_per_connection: int = field(
        default=1024,
        metadata=_about(_integer(1, 10_000_000), "messages sent over one SMTP connection"),
    )
    idle_timeout_seconds: float = field(
        default=5.0, metadata=_about(_seconds, "close an idle SMTP connection after this long")
    )
    connect_timeout_seconds: float = field(
        default=60.0, metadata=_about(_seconds, "TCP connect timeout per address")
    )
    banner_timeout_seconds: float = field(
        default=60.0, metadata=_about(_seconds, "wait for the 220 banner")
    )
    command_timeout_seconds: float = field(
        default=300.0,
        metadata=_about(_seconds, "wait for each reply to EHLO, STARTTLS, MAIL, RCPT and DATA"),
    )
    enable_pipelining: bool = field(
        default=True,
        metadata=_about(
            _boolean,
            "send RSET, MAIL, RCPT and DATA in one write to peers that offer PIPELINING "
            "(KumoMTA's enable_pipelining)",
        ),
    )
    tls_mode: str = field(
        default="Opportunistic",
        metadata=_about(
            _string,
            "Opportunistic, OpportunisticInsecure, Required, RequiredInsecure or Disabled",
        ),
    )
    tls_ca_file: Path | None = field(
        default=None,
        metadata=_about(
            _optional_path, "extra CA certificates (PEM) trusted when validating peers"
        ),
    )
    ehlo_name: str | None = field(
        default=None,
        metadata=_about(_optional_string, "name sent in EHLO; default: this host's FQDN"),
    )
    source_address: str | None = field(
        default=None,
        metadata=_about(
            _optional_string,
            "local IP the built-in 'unspecified' egress source binds to (a policy's "
            "sources name their own)",
        ),
    )
    ready_queue_refresh_seconds: float = field(
        default=30.0,
        metadata=_about(
            _positive_seconds,
            "republish an unchanged ready queue's state this often (changes go out within a "
            "second); the admin API forgets a state after three refreshes without one",
        ),
    )
    site_ownership: bool = field(
        default=True,
        metadata=_about(
            _boolean,
            "hand each request to the delivery instance owning its site (the `attempts` "
            "partition its site name hashes to), so that egress limits hold for the whole "
            "deployment; false: each instance applies them alone",
        ),
    )

    def validate(self) -> None:
        if self.source_address is not None:
            try:
                ipaddress.ip_address(self.source_address)
            except ValueError:
                raise SettingsError(
                    "RELAYSTREAM_DELIVERY_SOURCE_ADDRESS: expected an IP address, "
                    f"got {self.source_address!r}"
                ) from None
        # The names of the delivery service's TlsMode (services/delivery/tls.py).
        modes = ("opportunistic", "opportunisticinsecure", "required", "requiredinsecure")
        if self.tls_mode.lower() not in (*modes, "disabled"):
            raise SettingsError(
                "RELAYSTREAM_DELIVERY_TLS_MODE: expected Opportunistic, OpportunisticInsecure, "
                f"Required, RequiredInsecure or Disabled, got {self.tls_mode!r}"
            )


@dataclass(frozen=True)
class Settings:
    """All settings; a service reads `runtime` and its own section."""

    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    scheduling: SchedulingSettings = field(default_factory=SchedulingSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)


# Section name in the file and env prefix; the runtime section lives at the file's top level.
_SECTIONS: dict[str, type[Any]] = {
    "runtime": RuntimeSettings,
    "ingest": IngestSettings,
    "routing": RoutingSettings,
    "scheduling": SchedulingSettings,
    "delivery": DeliverySettings,
}
_TOP_LEVEL = "runtime"


@dataclass(frozen=True)
class SettingInfo:
    """One row of the settings table."""

    section: str
    name: str
    file_key: str
    environment_variable: str
    default: object
    doc: str


def _env_name(section: str, name: str) -> str:
    middle = "" if section == _TOP_LEVEL else f"{section.upper()}_"
    return f"{ENV_PREFIX}{middle}{name.upper()}"


def _file_key(section: str, name: str) -> str:
    return name if section == _TOP_LEVEL else f"{section}.{name}"


def settings_table() -> list[SettingInfo]:
    """Every setting with its file key, environment variable, default and meaning."""
    rows = []
    for section, cls in _SECTIONS.items():
        defaults = cls()
        for f in dataclasses.fields(cls):
            rows.append(
                SettingInfo(
                    section=section,
                    name=f.name,
                    file_key=_file_key(section, f.name),
                    environment_variable=_env_name(section, f.name),
                    default=getattr(defaults, f.name),
                    doc=str(f.metadata["doc"]),
                )
            )
    return rows


def known_environment_variables() -> frozenset[str]:
    """All variable names this module reads, `RELAYSTREAM_CONFIG` included."""
    return frozenset(
        {row.environment_variable for row in settings_table()} | {CONFIG_FILE_VARIABLE}
    )


def unknown_environment_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """`RELAYSTREAM_*` variables that name no setting (typos, or Kubernetes service links)."""
    env = os.environ if environ is None else environ
    known = known_environment_variables()
    return sorted(name for name in env if name.startswith(ENV_PREFIX) and name not in known)


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read the settings file: {exc.strerror}") from exc
    try:
        if path.suffix == ".toml":
            data: object = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            raise SettingsError(f"{path}: settings file must end in .yaml, .yml or .toml")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise SettingsError(f"{path}: not valid {path.suffix[1:].upper()}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping at the top level")
    return data


def _unknown_key(path: Path, key: str, known: Sequence[str]) -> SettingsError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return SettingsError(f"{path}: unknown key '{key}'{hint}")


def _file_values(path: Path) -> dict[str, dict[str, object]]:
    """The file's values by section and name, after rejecting unknown keys."""
    data = _read_file(path)
    known_keys = [row.file_key for row in settings_table()] + [
        s for s in _SECTIONS if s != _TOP_LEVEL
    ]
    values: dict[str, dict[str, object]] = {section: {} for section in _SECTIONS}
    top_fields = {f.name for f in dataclasses.fields(_SECTIONS[_TOP_LEVEL])}
    for key, value in data.items():
        if key in _SECTIONS and key != _TOP_LEVEL:
            if value is None:
                continue
            if not isinstance(value, dict):
                raise SettingsError(f"{path}: {key}: expected a mapping of settings")
            section_fields = {f.name for f in dataclasses.fields(_SECTIONS[key])}
            for name, item in value.items():
                if name not in section_fields:
                    raise _unknown_key(path, f"{key}.{name}", known_keys)
                values[key][name] = item
        elif key in top_fields:
            values[_TOP_LEVEL][key] = value
        else:
            raise _unknown_key(path, str(key), known_keys)
    return values


def load_settings(
    path: Path | str | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the settings: defaults, then the file (`path` or `$RELAYSTREAM_CONFIG`), then env.

    Raises SettingsError naming the bad key or variable and why it is bad. Unknown keys in the
    file are errors (a typo would otherwise silently keep a default). Unknown `RELAYSTREAM_*`
    variables are not: Kubernetes injects `<SERVICE>_PORT` style variables for a Service named
    `relaystream-...`; `unknown_environment_variables` lists them for a warning.
    """
    env = dict(os.environ if environ is None else environ)
    if path is None and env.get(CONFIG_FILE_VARIABLE):
        path = env[CONFIG_FILE_VARIABLE]
    file_path = Path(path) if path is not None else None
    file_values = _file_values(file_path) if file_path is not None else {}

    sections: dict[str, Any] = {}
    for section, cls in _SECTIONS.items():
        kwargs: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            parse = f.metadata["parse"]
            env_name = _env_name(section, f.name)
            raw: object
            if env_name in env:
                raw, where = env[env_name], env_name
            elif f.name in file_values.get(section, {}):
                raw = file_values[section][f.name]
                where = f"{file_path}: {_file_key(section, f.name)}"
            else:
                continue
            try:
                kwargs[f.name] = parse(raw)
            except _Invalid as exc:
                raise SettingsError(f"{where}: expected {exc.expected}, got {raw!r}") from None
        built = cls(**kwargs)
        validate = getattr(built, "validate", None)
        if validate is not None:
            validate()
        sections[section] = built
    return Settings(**sections)


def render_settings_table() -> str:
    """The settings table as Markdown, for the docs."""
    lines = [
        "| environment variable | file key | default | meaning |",
        "|---|---|---|---|",
    ]
    for row in settings_table():
        default = row.default
        if isinstance(default, tuple):
            default = ",".join(str(item) for item in default)
        elif isinstance(default, Enum):
            default = default.value
        shown = "" if default is None else str(default)
        lines.append(f"| `{row.environment_variable}` | `{row.file_key}` | `{shown}` | {row.doc} |")
    return "\n".join(lines)
