"""Classifying a routing target: a DNS name to resolve, or an IP literal to connect to.

A routing target is the domain of a queue name, a routing_domain, or an mx_list entry
(ROUTING.md section 4). Classification follows KumoMTA's `DomainClassification`: an optional
trailing `:port`, then either a bracketed literal (whose inside may carry the port instead)
or a DNS name. The non-conforming untagged `[::1]` is accepted here because smarthost
configuration uses it; the SMTP envelope parser (envelope.py) refuses it.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass

from .domain_names import DomainNameError, to_ascii_domain

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Rust's u16 parser accepts an optional "+" and leading zeros; nothing else.
_PORT = re.compile(r"\+?[0-9]+")
_MAX_PORT = 65535


class RoutingTargetError(ValueError):
    """A routing target that is neither a DNS name nor a valid IP literal."""


class TargetKind(enum.Enum):
    DNS_NAME = "DnsName"
    IP_LITERAL = "IpLiteral"


def split_colon_port(text: str) -> tuple[str, int | None]:
    """Split a trailing `:port` off `text`, as KumoMTA does.

    The port is split only when the text after the last `:` is a u16 and the text before it
    holds no `:` (so `::1` and `[IPv6:::1]` keep their colons).
    """
    head, sep, tail = text.rpartition(":")
    if not sep or ":" in head or not _PORT.fullmatch(tail):
        return text, None
    port = int(tail)
    if port > _MAX_PORT:
        return text, None
    return head, port


def parse_ip(text: str) -> IpAddress | None:
    """An IPv4 or IPv6 address in its plain textual form, or None.

    Python accepts IPv6 scope ids (`fe80::1%eth0`); Rust's parser (KumoMTA) does not.
    """
    if "%" in text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def ip_text(ip: IpAddress) -> str:
    """The textual form KumoMTA shows for an address (IPv4-mapped IPv6 as `::ffff:a.b.c.d`)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return f"::ffff:{ip.ipv4_mapped}"
    return str(ip)


def socket_text(ip: IpAddress, port: int | None) -> str:
    """`ip`, `ip:port` or `[ipv6]:port`: how KumoMTA renders an address with optional port."""
    if port is None:
        return ip_text(ip)
    if isinstance(ip, ipaddress.IPv6Address):
        return f"[{ip_text(ip)}]:{port}"
    return f"{ip_text(ip)}:{port}"


@dataclass(frozen=True)
class RoutingTarget:
    """Where a queue's messages go: `host` is the lowercased A-label DNS name (no trailing
    dot) for DnsName, the IP's text form for IpLiteral."""

    kind: TargetKind
    host: str
    port: int | None = None
    ip: IpAddress | None = None

    @property
    def is_literal(self) -> bool:
        return self.kind is TargetKind.IP_LITERAL

    @property
    def literal_site_name(self) -> str:
        """The site name of a literal: its address text, with the port if one was given."""
        if self.ip is None:
            raise RoutingTargetError(f"{self.host!r} is not an IP literal")
        return socket_text(self.ip, self.port)

    @classmethod
    def classify(cls, text: str) -> RoutingTarget:
        rest, port = split_colon_port(text)
        if rest.startswith("["):
            return cls._classify_literal(text, rest, port)
        try:
            name = to_ascii_domain(rest)
        except DomainNameError as err:
            raise RoutingTargetError(str(err)) from err
        return cls(TargetKind.DNS_NAME, name, port)

    @classmethod
    def _classify_literal(cls, text: str, rest: str, port: int | None) -> RoutingTarget:
        if not rest.endswith("]") or len(rest) < 2:
            raise RoutingTargetError(f"malformed literal {text!r}: no closing ']'")
        inside, inner_port = split_colon_port(rest[1:-1].lower())
        if inner_port is not None:
            if port is not None:
                raise RoutingTargetError(
                    f"invalid address {text!r}: a port both inside and outside the brackets"
                )
            port = inner_port
        if inside.startswith("ipv6:"):
            ip: IpAddress | None = parse_ip(inside[len("ipv6:") :])
            if not isinstance(ip, ipaddress.IPv6Address):
                raise RoutingTargetError(f"invalid address {text!r}: not an IPv6 address")
        else:
            ip = parse_ip(inside)
            if ip is None:
                raise RoutingTargetError(f"invalid address {text!r}: not an IP address")
        return cls(TargetKind.IP_LITERAL, ip_text(ip), port, ip)
