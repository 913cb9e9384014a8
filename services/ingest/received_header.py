"""The `Received:` trace header (RFC 5321 section 4.4) ingest prepends to SMTP mail."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime

# What may appear of the client's EHLO argument: it is untrusted and goes into a header.
_UNSAFE = re.compile(r"[^A-Za-z0-9.\-_:\[\]]")


@dataclass(frozen=True)
class TraceFacts:
    ehlo_domain: str
    peer_ip: str
    hostname: str
    tls: bool
    authenticated: bool
    transaction_id: str
    received_at: datetime


def with_protocol(*, tls: bool, authenticated: bool) -> str:
    """ESMTP, ESMTPS, ESMTPA or ESMTPSA (RFC 3848)."""
    return "ESMTP" + ("S" if tls else "") + ("A" if authenticated else "")


def address_literal(ip: str) -> str:
    parsed = ipaddress.ip_address(ip)
    return f"[IPv6:{parsed.compressed}]" if parsed.version == 6 else f"[{parsed}]"


def received_header(facts: TraceFacts, recipients: list[str]) -> bytes:
    """The header, folded, CRLF-terminated; `for` names the recipient only when there is one
    (listing every recipient would disclose Bcc recipients to each other)."""
    ehlo = _UNSAFE.sub("?", facts.ehlo_domain)[:255] or "unknown"
    recipient = f" for <{recipients[0]}>" if len(recipients) == 1 else ""
    protocol = with_protocol(tls=facts.tls, authenticated=facts.authenticated)
    header = (
        f"Received: from {ehlo} ({address_literal(facts.peer_ip)})\r\n"
        f"\tby {facts.hostname} (relaystream) with {protocol}\r\n"
        f"\tid {facts.transaction_id}{recipient};\r\n"
        f"\t{format_datetime(facts.received_at)}\r\n"
    )
    return header.encode("utf-8")
