"""Listener domains: what `kumo.make_listener_domain` builds and the `get_listener_domain`
event returns, with KumoMTA's fields (relay_to, relay_from, log_oob, log_arf), checked
strictly: an unknown field or a bad value is an error, never ignored.

For a recipient domain it says whether anyone may relay to it (`relay_to`), which client
networks may relay mail from it (`relay_from`), and whether out-of-band bounce reports
(`log_oob`, RFC 3464) and feedback reports (`log_arf`, RFC 5965) sent to it are logged.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ListenerDomainError(ValueError):
    """A listener domain that names an unknown field or holds a bad value."""


class ReportHandling(enum.Enum):
    """What happens to an incoming report (an OOB bounce or an ARF feedback report)."""

    IGNORE = "Ignore"
    LOG_THEN_RELAY = "LogThenRelay"
    LOG_THEN_DROP = "LogThenDrop"

    @classmethod
    def parse(cls, field: str, value: object) -> ReportHandling:
        # KumoMTA's older booleans: false is Ignore, true is LogThenRelay.
        if value is False:
            return cls.IGNORE
        if value is True:
            return cls.LOG_THEN_RELAY
        for member in cls:
            if value == member.value:
                return member
        choices = ", ".join(repr(member.value) for member in cls)
        raise ListenerDomainError(
            f"bad value for field {field!r}: expected true, false or one of {choices}, "
            f"got {value!r}"
        )


@dataclass(frozen=True)
class ListenerDomain:
    relay_to: bool = False
    relay_from: tuple[Network, ...] = ()
    log_oob: ReportHandling = ReportHandling.IGNORE
    log_arf: ReportHandling = ReportHandling.IGNORE

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> ListenerDomain:
        if not isinstance(mapping, Mapping):
            raise ListenerDomainError("a listener domain must be a table of fields")
        unknown = sorted(set(mapping) - _FIELDS)
        if unknown:
            raise ListenerDomainError(
                f"unknown field {unknown[0]!r} (known: {', '.join(sorted(_FIELDS))})"
            )
        relay_to = mapping.get("relay_to", False)
        if not isinstance(relay_to, bool):
            raise ListenerDomainError(
                f"bad value for field 'relay_to': expected a boolean, got {relay_to!r}"
            )
        return cls(
            relay_to=relay_to,
            relay_from=_networks(mapping.get("relay_from", ())),
            log_oob=ReportHandling.parse("log_oob", mapping.get("log_oob", False)),
            log_arf=ReportHandling.parse("log_arf", mapping.get("log_arf", False)),
        )

    def to_mapping(self) -> dict[str, Any]:
        return {
            "relay_to": self.relay_to,
            "relay_from": [str(network) for network in self.relay_from],
            "log_oob": self.log_oob.value,
            "log_arf": self.log_arf.value,
        }

    @property
    def accepts_reception(self) -> bool:
        """Whether a recipient in this domain may be accepted at all (KumoMTA rejects RCPT TO
        when nothing relays or logs it)."""
        return (
            self.relay_to
            or self.log_oob is not ReportHandling.IGNORE
            or self.log_arf is not ReportHandling.IGNORE
        )

    def relays_from(self, peer: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """Whether a client at `peer` may relay mail from this (sender) domain."""
        return any(peer.version == net.version and peer in net for net in self.relay_from)


_FIELDS = frozenset({"relay_to", "relay_from", "log_oob", "log_arf"})


def _networks(value: object) -> tuple[Network, ...]:
    if isinstance(value, Mapping) and not value:
        return ()  # an empty Lua table may arrive as an empty mapping
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
        raise ListenerDomainError(
            f"bad value for field 'relay_from': expected a list of CIDR blocks, got {value!r}"
        )
    networks = []
    for entry in value:
        if not isinstance(entry, str):
            raise ListenerDomainError(f"bad relay_from entry {entry!r}: expected a string")
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError as err:
            raise ListenerDomainError(f"bad relay_from entry {entry!r}: {err}") from err
    return tuple(networks)
