"""Envelope addresses as an SMTP server accepts them."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relaystream.core.domain.envelope import (
    MAX_DOMAIN_OCTETS,
    MAX_LOCAL_PART_OCTETS,
    MAX_MAILBOX_OCTETS,
    MAX_PATH_OCTETS,
    EnvelopeAddress,
    EnvelopeAddressError,
)


@pytest.mark.parametrize(
    ("text", "local_part", "domain"),
    [
        ("user@example.com", "user", "example.com"),
        ("First.Last@Example.COM", "First.Last", "example.com"),
        ("user+tag@sub.example.com", "user+tag", "sub.example.com"),
        ("user@[10.0.0.1]", "user", "[10.0.0.1]"),
        ("user@[IPv6:::1]", "user", "[IPv6:::1]"),
        ("user@[ipv6:2001:DB8:0::1]", "user", "[IPv6:2001:db8::1]"),
        ('"john doe"@example.com', '"john doe"', "example.com"),
        ('"a\\"b"@example.com', '"a\\"b"', "example.com"),
        ("用户@例子.广告", "用户", "xn--fsqu00a.xn--4rr70v"),
        ("user@bücher.example", "user", "xn--bcher-kva.example"),
        ("user@mail_1.example.com", "user", "mail_1.example.com"),
    ],
)
def test_valid_addresses(text: str, local_part: str, domain: str) -> None:
    address = EnvelopeAddress.parse(text)
    assert (address.local_part, address.domain) == (local_part, domain)
    assert str(address) == f"{local_part}@{domain}"


def test_literal_flag() -> None:
    assert EnvelopeAddress.parse("u@[10.0.0.1]").is_domain_literal
    assert not EnvelopeAddress.parse("u@example.com").is_domain_literal


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("user@[::1]", "must be tagged"),
        ("user@[2001:db8::1]", "must be tagged"),
        ("user@[IPv6:10.0.0.1]", "invalid IPv6"),
        ("user@[IPv6:zz]", "invalid IPv6"),
        ("user@[10.0.0.256]", "invalid IPv4"),
        ("user@[10.0.0.1", "no closing"),
        ("user@[tag:whatever]", "unsupported address literal"),
        ("", "empty address"),
        ("user", "missing '@domain'"),
        ("user@", "missing domain"),
        ("@example.com", "invalid local part"),
        ("a..b@example.com", "missing '@domain'"),
        (".a@example.com", "invalid local part"),
        ('"unterminated@example.com', "quoted local part"),
        ("user@example.com.", "trailing dot"),
        ("user@-example.com", "must start with a letter or digit"),
        ("user@exa mple.com", "invalid domain"),
        ("user@a..com", "empty label"),
        ("us er@example.com", "missing '@domain'"),
        ("<user@example.com>", "invalid local part"),
    ],
)
def test_invalid_addresses(text: str, message: str) -> None:
    with pytest.raises(EnvelopeAddressError, match=message):
        EnvelopeAddress.parse(text)


@given(st.text())
def test_parse_raises_only_its_own_error(text: str) -> None:
    try:
        address = EnvelopeAddress.parse(text)
    except EnvelopeAddressError:
        return
    assert EnvelopeAddress.parse(str(address)) == address


# -- RFC 5321 size limits (section 4.5.3.1) ---------------------------------------------------

ATOM_CHARS = st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+/=?^_`{|}~-é用")


@given(st.text(ATOM_CHARS, min_size=1, max_size=120))
def test_a_local_part_is_at_most_64_octets(local_part: str) -> None:
    text = f"{local_part}@example.com"
    if len(local_part.encode()) <= MAX_LOCAL_PART_OCTETS:
        assert EnvelopeAddress.parse(text).local_part == local_part
    else:
        with pytest.raises(EnvelopeAddressError, match=r"local part of .* octets"):
            EnvelopeAddress.parse(text)


@given(st.integers(min_value=1, max_value=8), st.integers(min_value=1, max_value=63))
def test_a_mailbox_is_at_most_254_octets(labels: int, label_length: int) -> None:
    domain = ".".join(["d" * label_length] * labels)
    text = f"user@{domain}"
    octets = len(text)
    if octets <= MAX_MAILBOX_OCTETS and len(domain) <= 253:
        assert EnvelopeAddress.parse(text).domain == domain
    else:
        with pytest.raises(EnvelopeAddressError, match=r"octets|longer than"):
            EnvelopeAddress.parse(text)


def test_the_limits_are_rfc_5321s() -> None:
    assert (MAX_PATH_OCTETS, MAX_MAILBOX_OCTETS, MAX_LOCAL_PART_OCTETS, MAX_DOMAIN_OCTETS) == (
        256,
        254,
        64,
        255,
    )
    # The longest local part with the longest domain that still fits the path.
    longest = "l" * 64 + "@" + ".".join(["d" * 63] * 2 + ["d" * 61])
    assert len(longest) == 254
    assert str(EnvelopeAddress.parse(longest)) == longest
    with pytest.raises(EnvelopeAddressError, match="address of 200012 octets"):
        EnvelopeAddress.parse("a" * 200_000 + "@example.com")
    with pytest.raises(EnvelopeAddressError, match="local part of 130 octets"):
        EnvelopeAddress.parse("é" * 65 + "@example.com")  # 65 characters, 130 octets
