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
    def logs_reports(self) -> bool:
        """Whether it asks for OOB or ARF reports sent to it to be logged."""
        return (
            self.log_oob is not ReportHandling.IGNORE or self.log_arf is not ReportHandling.IGNORE
        )

    def relays_from(self, peer: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """Whether a client at `peer` may relay mail from this (sender) domain."""
        return any(peer.version == net.version and peer in net for net in self.relay_from)


@dataclass(frozen=True)
class RelayDecision:
    """Whether one RCPT TO may relay, and why (KumoMTA's check_relaying). `relay_hosts`:
    the client may relay anywhere (relay networks, SMTP AUTH); `relay_from`: the sender
    domain's listener domain lists the client's network; `relay_to`: the recipient domain's
    listener domain allows relaying to it from anyone. `reports_asked`: the recipient domain
    asks for OOB/ARF reports to be logged, which relaystream does not do (see `relays`)."""

    relay_hosts: bool
    relay_from: bool
    relay_to: bool
    reports_asked: bool

    @property
    def relays(self) -> bool:
        """Whether the recipient is accepted. KumoMTA also accepts a recipient whose domain
        only logs reports (log_oob/log_arf) and then drops whatever is not a report;
        relaystream parses no reports, so accepting those would drop mail silently: only
        relaying accepts a recipient here."""
        return self.relay_hosts or self.relay_from or self.relay_to


def relay_decision(
    peer: ipaddress.IPv4Address | ipaddress.IPv6Address,
    *,
    relay_hosts: bool,
    sender_domain: ListenerDomain | None,
    recipient_domain: ListenerDomain | None,
) -> RelayDecision:
    """KumoMTA's order: relay hosts, then the sender domain's relay_from (so CIDR or SMTP AUTH
    rules for a sender apply before a destination whose relay_to is false), then the
    recipient domain's relay_to."""
    return RelayDecision(
        relay_hosts=relay_hosts,
        relay_from=sender_domain is not None and sender_domain.relays_from(peer),
        relay_to=recipient_domain is not None and recipient_domain.relay_to,
        reports_asked=recipient_domain is not None and recipient_domain.logs_reports,
    )


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
