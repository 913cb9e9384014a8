"""Routing-target classification (ROUTING.md section 4, KumoMTA's DomainClassification)."""

import contextlib
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relaystream.core.domain.routing_target import (
    RoutingTarget,
    RoutingTargetError,
    TargetKind,
    ip_text,
    socket_text,
    split_colon_port,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("foo.com", ("foo.com", None)),
        ("foo.com:2025", ("foo.com", 2025)),
        ("foo.com:+25", ("foo.com", 25)),
        ("foo.com:65536", ("foo.com:65536", None)),
        ("foo.com:x", ("foo.com:x", None)),
        ("::1", ("::1", None)),
        ("[IPv6:::1]", ("[IPv6:::1]", None)),
        ("[IPv6:::1]:25", ("[IPv6:::1]:25", None)),
        ("10.0.0.1:25", ("10.0.0.1", 25)),
    ],
)
def test_split_colon_port(text: str, expected: tuple[str, int | None]) -> None:
    assert split_colon_port(text) == expected


def test_dns_name_is_lowercased_a_label() -> None:
    target = RoutingTarget.classify("Smart.Host.Example.")
    assert target == RoutingTarget(TargetKind.DNS_NAME, "smart.host.example")
    assert not target.is_literal
    assert RoutingTarget.classify("Bücher.at").host == "xn--bcher-kva.at"


def test_dns_name_with_port() -> None:
    assert RoutingTarget.classify("routing.com:2025") == RoutingTarget(
        TargetKind.DNS_NAME, "routing.com", 2025
    )


def test_underscore_names_are_accepted() -> None:
    assert RoutingTarget.classify("_smtp.example.com").host == "_smtp.example.com"


@pytest.mark.parametrize(
    ("text", "host", "port", "site"),
    [
        ("[10.0.0.1]", "10.0.0.1", None, "10.0.0.1"),
        ("[10.0.0.1]:25", "10.0.0.1", 25, "10.0.0.1:25"),
        ("[10.0.0.1:25]", "10.0.0.1", 25, "10.0.0.1:25"),
        ("[IPv6:::1]", "::1", None, "::1"),
        ("[ipv6:2001:DB8::1]", "2001:db8::1", None, "2001:db8::1"),
        ("[::1]", "::1", None, "::1"),  # non-conforming but accepted, as KumoMTA does
        ("[127.0.0.1]", "127.0.0.1", None, "127.0.0.1"),
    ],
)
def test_literals(text: str, host: str, port: int | None, site: str) -> None:
    target = RoutingTarget.classify(text)
    assert target.kind is TargetKind.IP_LITERAL
    assert (target.host, target.port, target.literal_site_name) == (host, port, site)
    assert target.ip == ipaddress.ip_address(host)


def test_port_inside_and_outside_is_refused() -> None:
    # An outer port is split only when the text before it has no ':', so with an inner port
    # the whole text stays one unterminated literal (KumoMTA behaves the same).
    with pytest.raises(RoutingTargetError, match="malformed literal"):
        RoutingTarget.classify("[10.0.0.1:25]:26")


def test_ipv6_literal_cannot_take_an_outside_port() -> None:
    # The text before the last ':' holds ':' so no port is split off, and the literal then
    # lacks its closing bracket: KumoMTA refuses it the same way.
    with pytest.raises(RoutingTargetError, match="malformed literal"):
        RoutingTarget.classify("[IPv6:::1]:25")


@pytest.mark.parametrize("text", ["[10.0.0.1", "[", "[10.0.0.1]x"])
def test_malformed_literal(text: str) -> None:
    with pytest.raises(RoutingTargetError, match="malformed literal"):
        RoutingTarget.classify(text)


@pytest.mark.parametrize(
    "text",
    [
        "[10.0.0.256]",
        "[example.com]",
        "[IPv6:10.0.0.1]",
        "[fe80::1%eth0]",
        "[]",
    ],
)
def test_invalid_address(text: str) -> None:
    with pytest.raises(RoutingTargetError, match="invalid address"):
        RoutingTarget.classify(text)


@pytest.mark.parametrize("text", ["", "a..b", "bad name.com", "x" * 64 + ".com", "a,b"])
def test_invalid_dns_names(text: str) -> None:
    with pytest.raises(RoutingTargetError):
        RoutingTarget.classify(text)


def test_ipv4_mapped_text_form_matches_kumomta() -> None:
    assert ip_text(ipaddress.IPv6Address("::ffff:1.2.3.4")) == "::ffff:1.2.3.4"
    assert socket_text(ipaddress.IPv6Address("::1"), 100) == "[::1]:100"
    assert socket_text(ipaddress.IPv4Address("10.0.0.1"), 25) == "10.0.0.1:25"


def test_literal_site_name_of_a_dns_name_is_an_error() -> None:
    with pytest.raises(RoutingTargetError):
        _ = RoutingTarget.classify("example.com").literal_site_name


@given(st.text())
def test_classify_raises_only_its_own_error(text: str) -> None:
    try:
        target = RoutingTarget.classify(text)
    except RoutingTargetError:
        return
    assert target.host
    assert target.port is None or 0 <= target.port <= 65535


@given(st.from_regex(r"\[[0-9a-fA-Fiv:.\]\[]{0,20}(:[0-9]{1,6})?", fullmatch=True))
def test_classify_literal_like_text_raises_only_its_own_error(text: str) -> None:
    with contextlib.suppress(RoutingTargetError):
        RoutingTarget.classify(text)
