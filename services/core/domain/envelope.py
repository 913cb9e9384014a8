"""SMTP envelope addresses (RFC 5321 `Mailbox`): `local-part@domain`.

The local part is a dot-string of atoms or a quoted string (UTF-8 allowed, as SMTPUTF8 and
KumoMTA allow). The domain is a DNS name (normalized to its lowercased A-label form) or an
address literal: `[10.0.0.1]` or `[IPv6:::1]`. Unlike routing targets (routing_target.py),
the untagged `[::1]` is refused: RFC 5321 has no such form and downstream MTAs may choke on
it. The null reverse path `<>` is the caller's business (it has no `@`). Error messages are
meant for an SMTP reply (501/553), so they say what is wrong in plain words.

The RFC 5321 size limits (section 4.5.3.1) are enforced here, for SMTP and HTTP alike: a path
(`<` mailbox `>`) of at most 256 octets, so a mailbox of at most 254; a local part of at most
64; a domain of at most 255 (a DNS name is held to 253 by domain_names.py). Octets are counted
in UTF-8, as an SMTPUTF8 peer sends them.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from .domain_names import DomainNameError, to_ascii_domain
from .routing_target import ip_text, parse_ip

# atext per RFC 5322, plus any non-ASCII character (RFC 6531).
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]+"
_DOT_STRING = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
# qtextSMTP (%d32-33 / %d35-91 / %d93-126 / UTF-8) or a backslash pair (%d32-126).
_QUOTED_STRING = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*"')
_IPV4_LITERAL = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
_IPV6_TAG = "ipv6:"

MAX_PATH_OCTETS = 256  # `<` mailbox `>`
MAX_MAILBOX_OCTETS = MAX_PATH_OCTETS - 2
MAX_LOCAL_PART_OCTETS = 64
MAX_DOMAIN_OCTETS = 255


class EnvelopeAddressError(ValueError):
    """An envelope address that RFC 5321 does not allow."""


@dataclass(frozen=True)
class EnvelopeAddress:
    """`local_part` as written (quotes kept); `domain` normalized: a lowercased A-label DNS
    name, `[a.b.c.d]`, or `[IPv6:addr]` with the address in canonical form."""

    local_part: str
    domain: str

    @classmethod
    def parse(cls, text: str) -> EnvelopeAddress:
        if not text:
            raise EnvelopeAddressError("empty address")
        # Checked first, so an oversized input costs no more than its length.
        _check_length("address", text, MAX_MAILBOX_OCTETS)
        local_part, rest = _split_local_part(text)
        _check_length("local part", local_part, MAX_LOCAL_PART_OCTETS)
        if not rest.startswith("@"):
            raise EnvelopeAddressError(f"missing '@domain' in address {text!r}")
        domain_text = rest[1:]
        if not domain_text:
            raise EnvelopeAddressError(f"missing domain in address {text!r}")
        _check_length("domain", domain_text, MAX_DOMAIN_OCTETS)
        if domain_text.startswith("["):
            return cls(local_part, _parse_address_literal(domain_text))
        try:
            return cls(local_part, to_ascii_domain(_checked_domain(domain_text)))
        except DomainNameError as err:
            raise EnvelopeAddressError(f"invalid domain in address {text!r}: {err}") from err

    @property
    def is_domain_literal(self) -> bool:
        return self.domain.startswith("[")

    def __str__(self) -> str:
        return f"{self.local_part}@{self.domain}"


def octet_length(text: str) -> int:
    """Octets of `text` in UTF-8 (a lone surrogate, which no valid address holds, counts 3)."""
    return len(text.encode("utf-8", "surrogatepass"))


def _check_length(what: str, text: str, limit: int) -> None:
    # A character is at least one octet: most texts need no encoding to pass.
    if len(text) > limit or octet_length(text) > limit:
        raise EnvelopeAddressError(
            f"{what} of {octet_length(text)} octets is longer than RFC 5321 allows ({limit})"
        )


def _split_local_part(text: str) -> tuple[str, str]:
    if text.startswith('"'):
        match = _QUOTED_STRING.match(text)
        if match is None:
            raise EnvelopeAddressError(f"unterminated or invalid quoted local part in {text!r}")
    else:
        match = _DOT_STRING.match(text)
        if match is None:
            raise EnvelopeAddressError(f"invalid local part in address {text!r}")
    return match.group(0), text[match.end() :]


def _checked_domain(domain: str) -> str:
    # A trailing dot is legal in DNS but not in an SMTP mailbox, and RFC 5321 sub-domains
    # start with a letter, digit or (SMTPUTF8) non-ASCII character.
    if domain.endswith("."):
        raise DomainNameError("trailing dot")
    for label in domain.split("."):
        if label and not ((label[0].isascii() and label[0].isalnum()) or not label[0].isascii()):
            raise DomainNameError(f"label {label!r} must start with a letter or digit")
    return domain


def _parse_address_literal(literal: str) -> str:
    if not literal.endswith("]"):
        raise EnvelopeAddressError(f"address literal {literal!r} has no closing ']'")
    inside = literal[1:-1]
    if inside[: len(_IPV6_TAG)].lower() == _IPV6_TAG:
        ip = parse_ip(inside[len(_IPV6_TAG) :])
        if not isinstance(ip, ipaddress.IPv6Address):
            raise EnvelopeAddressError(f"invalid IPv6 address in literal {literal!r}")
        return f"[IPv6:{ip_text(ip)}]"
    if _IPV4_LITERAL.fullmatch(inside):
        ip = parse_ip(inside)
        if ip is None:
            raise EnvelopeAddressError(f"invalid IPv4 address in literal {literal!r}")
        return f"[{ip}]"
    if isinstance(parse_ip(inside), ipaddress.IPv6Address):
        raise EnvelopeAddressError(
            f"IPv6 address literal {literal!r} must be tagged: write [IPv6:{inside}]"
        )
    raise EnvelopeAddressError(f"unsupported address literal {literal!r}")
