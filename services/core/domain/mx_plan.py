"""MX plans (ROUTING.md section 7) built from DNS answers given as plain data.

The resolver (core/dns) turns DNS responses into `MxAnswer`s and host addresses; everything
that decides what those mean lives here: preference order, implicit and null MX, site names
(KumoMTA's label-by-label factoring), the connection order of addresses, the prohibited
destinations, and the SMTP responses for failures.
"""

from __future__ import annotations

import enum
import ipaddress
import random as random_module
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .domain_names import DomainNameError, to_ascii_domain
from .queue_config import MxListEntry, MxListResolved, QueueConfig
from .routing_target import IpAddress, RoutingTarget, parse_ip, socket_text, split_colon_port
from .smtp_reply import SmtpResponse

NULL_MX_HOST = "."
IMPLICIT_MX_PREFERENCE = 1
LITERAL_PREFERENCE = 1

# KumoMTA's default prohibited_hosts: delivering there is almost always a loop or a mistake.
PROHIBITED_NETWORKS: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
    ipaddress.ip_network("0.0.0.0/32"),
    ipaddress.ip_network("::/128"),
)


class MxAnswerKind(enum.Enum):
    RECORDS = "records"
    NODATA = "nodata"  # the name exists but has no MX records
    NXDOMAIN = "nxdomain"
    SERVFAIL = "servfail"
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class MxRecord:
    preference: int
    exchange: str  # as DNS gave it; "." is the null MX


@dataclass(frozen=True)
class MxAnswer:
    kind: MxAnswerKind
    records: tuple[MxRecord, ...] = ()
    detail: str = ""  # resolver error text, for failure responses


class MxLookupFailed(Exception):
    """MX resolution failed in a way to retry later (NXDOMAIN, SERVFAIL, timeout): never a
    bounce. `response` is the 451 4.4.4 to log; `site_name` is the placeholder site
    (`NXDOMAIN:domain` or `DNSFAIL:domain`) KumoMTA shows for such a queue."""

    def __init__(self, domain: str, reason: str, detail: str) -> None:
        self.domain = domain
        self.reason = reason
        self.detail = detail
        self.site_name = f"{reason}:{domain}"
        self.response = SmtpResponse.with_code(
            451, (4, 4, 4), f"MX lookup for {domain} failed: {detail or reason}"
        )
        super().__init__(self.response.content)


@dataclass(frozen=True)
class MxPlan:
    """Where a routing target's mail goes, before addresses are looked up.

    `by_preference` holds (preference, hosts) in ascending preference, hosts sorted by name,
    lowercased, without trailing dot (a `:port` from the routing target appended). A literal
    target has one "host": its IP text. An mx_list has `mx_list` set instead of hosts.
    """

    domain: str
    site_name: str
    by_preference: tuple[tuple[int, tuple[str, ...]], ...] = ()
    is_mx: bool = True
    is_null_mx: bool = False
    is_domain_literal: bool = False
    port: int | None = None
    mx_list: tuple[MxListEntry, ...] | None = None

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(host for _, hosts in self.by_preference for host in hosts)


def null_mx_response() -> SmtpResponse:
    return SmtpResponse.with_code(556, (5, 1, 10), "Recipient address has a null MX")


def only_skipped_hosts_response() -> SmtpResponse:
    """KumoMTA's (since 2026.03) transient failure when skip_hosts removed every host."""
    return SmtpResponse.with_code(
        451, (4, 4, 4), "MX consisted solely of hosts on the skip_hosts list"
    )


def no_addresses_response() -> SmtpResponse:
    return SmtpResponse.with_code(451, (4, 4, 4), "MX didn't resolve to any hosts")


def factor_names(names: Iterable[str]) -> str:
    """A compact site name for a list of host names, factored label by label from the right:
    `mta5.am0.yahoodns.net, mta6..., mta7...` -> `(mta5|mta6|mta7).am0.yahoodns.net`.

    Alternatives keep first-seen order; a name with fewer labels than the longest marks the
    missing positions with `?`. A `:port` sticks to the last label. Invalid names are left
    out. The null MX host `.` has no labels.
    """
    split_names: list[list[str]] = []
    for text in names:
        name, port = split_colon_port(text)
        labels = _lower_labels(name)
        if labels is None:
            continue
        if port is not None and labels:
            labels[-1] = f"{labels[-1]}:{port}"
        split_names.append(list(reversed(labels)))
    longest = max((len(labels) for labels in split_names), default=0)
    positions: list[list[str]] = [[] for _ in range(longest)]
    for labels in split_names:
        padded = labels + ["?"] * (longest - len(labels))
        for position, label in zip(positions, padded, strict=True):
            if label not in position:
                position.append(label)
    rendered: list[str] = []
    for position in positions:
        optional = "?" in position
        choices = [label for label in position if label != "?"]
        text = choices[0] if len(choices) == 1 else f"({'|'.join(choices)})"
        rendered.append(f"{text}?" if optional else text)
    return ".".join(reversed(rendered))


def _lower_labels(name: str) -> list[str] | None:
    if name in ("", NULL_MX_HOST):
        return [] if name == NULL_MX_HOST else None
    try:
        return to_ascii_domain(name).split(".")
    except DomainNameError:
        return None


def _host_name(exchange: str) -> str:
    """An exchange as a plan host: lowercased, no trailing dot ("." stays the null MX)."""
    if exchange == NULL_MX_HOST:
        return NULL_MX_HOST
    lowered = exchange.lower()
    return lowered[:-1] if lowered.endswith(".") else lowered


def _with_port(host: str, port: int | None) -> str:
    return host if port is None or host == NULL_MX_HOST else f"{host}:{port}"


def plan_from_mx_answer(target: RoutingTarget, answer: MxAnswer) -> MxPlan:
    """The plan for a DNS-name target from its MX answer; raises MxLookupFailed."""
    domain = target.host
    if answer.kind is MxAnswerKind.NXDOMAIN:
        raise MxLookupFailed(domain, "NXDOMAIN", answer.detail or "NXDOMAIN")
    if answer.kind in (MxAnswerKind.SERVFAIL, MxAnswerKind.TIMEOUT):
        raise MxLookupFailed(domain, "DNSFAIL", answer.detail or answer.kind.value.upper())
    if answer.kind is MxAnswerKind.NODATA or not answer.records:
        host = _with_port(domain, target.port)
        return MxPlan(
            domain=domain,
            site_name=factor_names([host]),
            by_preference=((IMPLICIT_MX_PREFERENCE, (host,)),),
            is_mx=False,
            port=target.port,
        )
    grouped: dict[int, list[str]] = {}
    for record in answer.records:
        grouped.setdefault(record.preference, []).append(_host_name(record.exchange))
    by_preference = tuple(
        # Sort as KumoMTA does, on the fully qualified (trailing-dot) form.
        (pref, tuple(_with_port(h, target.port) for h in sorted(hosts, key=_fqdn_sort_key)))
        for pref, hosts in sorted(grouped.items())
    )
    hosts = [host for _, group in by_preference for host in group]
    is_null_mx = any(_host_name(record.exchange) == NULL_MX_HOST for record in answer.records)
    return MxPlan(
        domain=domain,
        site_name=factor_names(hosts),
        by_preference=by_preference,
        is_null_mx=is_null_mx,
        port=target.port,
    )


def _fqdn_sort_key(host: str) -> str:
    return host if host == NULL_MX_HOST else f"{host}."


def plan_for_literal(target: RoutingTarget) -> MxPlan:
    """A domain literal: deliver straight to the address, no DNS; the site is the address."""
    site = target.literal_site_name
    return MxPlan(
        domain=target.host,
        site_name=site,
        by_preference=((LITERAL_PREFERENCE, (target.host,)),),
        is_mx=False,
        is_domain_literal=True,
        port=target.port,
    )


def plan_for_mx_list(domain: str, config: QueueConfig) -> MxPlan:
    """An explicit mx_list replaces MX resolution; its site is `mx_list:` + the entries."""
    if config.mx_list is None or config.mx_list_site_name is None:
        raise ValueError("queue config has no mx_list")
    return MxPlan(
        domain=domain,
        site_name=config.mx_list_site_name,
        is_mx=False,
        mx_list=config.mx_list,
    )


@dataclass(frozen=True)
class ResolvedAddress:
    """One connection candidate: `name` is the peer name (logs, TLS SNI), `ip` and `port`
    where to connect (port None: the default SMTP port)."""

    name: str
    ip: IpAddress
    port: int | None = None

    @property
    def addr(self) -> str:
        return socket_text(self.ip, self.port)


def connection_order(
    plan: MxPlan, addresses: Mapping[str, Sequence[str]], rng: random_module.Random
) -> list[ResolvedAddress]:
    """The addresses to try, first to last: preference ascending; within one preference the
    addresses of all its hosts shuffled with `rng` to spread load. `addresses` maps a plan
    host (without its `:port`) to its A/AAAA answers; a host without addresses is skipped.
    For an mx_list plan, entries keep their configured order and are not shuffled; a name
    entry's addresses are looked up under its `host`."""
    if plan.is_null_mx:
        return []
    if plan.mx_list is not None:
        return _mx_list_order(plan.mx_list, addresses)
    if plan.is_domain_literal:
        literal = parse_ip(plan.domain)
        return [] if literal is None else [ResolvedAddress(plan.domain, literal, plan.port)]
    ordered: list[ResolvedAddress] = []
    for _, hosts in plan.by_preference:
        group: list[ResolvedAddress] = []
        for host_text in hosts:
            host, port = split_colon_port(host_text) if plan.port is not None else (host_text, None)
            literal = parse_ip(host)
            candidates = [host] if literal is not None else addresses.get(host, ())
            for text in candidates:
                ip = parse_ip(text)
                if ip is not None:
                    group.append(ResolvedAddress(host, ip, port))
        rng.shuffle(group)
        ordered.extend(group)
    return ordered


def _mx_list_order(
    entries: Sequence[MxListEntry], addresses: Mapping[str, Sequence[str]]
) -> list[ResolvedAddress]:
    ordered: list[ResolvedAddress] = []
    for entry in entries:
        if isinstance(entry, MxListResolved):
            ordered.append(ResolvedAddress(entry.name, entry.ip, entry.port))
        elif entry.ip is not None:
            ordered.append(ResolvedAddress(entry.host, entry.ip, entry.port))
        else:
            for text in addresses.get(entry.host, ()):
                ip = parse_ip(text)
                if ip is not None:
                    ordered.append(ResolvedAddress(entry.host, ip, entry.port))
    return ordered


def is_prohibited(ip: IpAddress) -> bool:
    return any(ip in network for network in PROHIBITED_NETWORKS)


def prohibited_response(
    candidates: Sequence[ResolvedAddress],
    *,
    allow_prohibited: bool = False,
    networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = PROHIBITED_NETWORKS,
) -> SmtpResponse | None:
    """A 550 5.4.4 bounce when any candidate is in a prohibited network (KumoMTA's default
    `prohibited_hosts`: loopback, 0.0.0.0, ::; an egress path may name others), unless the
    switch allows them (tests, local smarthosts)."""
    if allow_prohibited:
        return None
    for candidate in candidates:
        if any(candidate.ip in network for network in networks):
            listed = ", ".join(str(network) for network in networks)
            return SmtpResponse.with_code(
                550,
                (5, 4, 4),
                f"{candidate.name}/{candidate.addr} is a prohibited destination ({listed})",
            )
    return None
