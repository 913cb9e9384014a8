"""Scheduled queue names: KumoMTA's parse examples, formatting rules, meta handling."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relaystream.core.domain.queue_name import (
    QueueName,
    QueueNameError,
    is_null_queue,
    normalize_recipient_domain,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("foo.com", QueueName(None, None, "foo.com", None)),
        ("tenant@foo.com", QueueName(None, "tenant", "foo.com", None)),
        ("campaign:@foo.com", QueueName("campaign", "", "foo.com", None)),
        ("campaign:tenant@foo.com", QueueName("campaign", "tenant", "foo.com", None)),
        (
            "campaign:tenant@foo.com!routing.com",
            QueueName("campaign", "tenant", "foo.com", "routing.com"),
        ),
        # Ports stay part of the domain or routing domain.
        ("foo.com:2025", QueueName(None, None, "foo.com:2025", None)),
        ("foo.com!routing.com:2025", QueueName(None, None, "foo.com", "routing.com:2025")),
        (
            "tenant@foo.com!routing.com:2025",
            QueueName(None, "tenant", "foo.com", "routing.com:2025"),
        ),
        (
            "campaign:@foo.com!routing.com:2025",
            QueueName("campaign", "", "foo.com", "routing.com:2025"),
        ),
        # First separator wins.
        ("a:b:c@d@e!f!g", QueueName("a", "b:c", "d@e", "f!g")),
        ("[10.0.0.1]", QueueName(None, None, "[10.0.0.1]", None)),
        ("[IPv6:::1]", QueueName(None, None, "[IPv6:::1]", None)),
    ],
)
def test_parse_matches_kumomta(text: str, expected: QueueName) -> None:
    assert QueueName.parse(text) == expected
    assert str(QueueName.parse(text)) == text


def test_empty_tenant_is_not_no_tenant() -> None:
    assert QueueName.parse("campaign:@foo.com").tenant == ""
    assert QueueName.parse("foo.com").tenant is None
    assert QueueName.parse("@foo.com") == QueueName(None, "", "foo.com")


@pytest.mark.parametrize(
    ("name", "text"),
    [
        (QueueName("c", "t", "d.com", "r.com"), "c:t@d.com!r.com"),
        (QueueName("c", None, "d.com", "r.com"), "c:@d.com!r.com"),
        (QueueName(None, "t", "d.com", "r.com"), "t@d.com!r.com"),
        (QueueName(None, None, "d.com", "r.com"), "d.com!r.com"),
        (QueueName("c", "t", "d.com"), "c:t@d.com"),
        (QueueName(None, None, "d.com"), "d.com"),
    ],
)
def test_format_table(name: QueueName, text: str) -> None:
    assert name.format() == text


def test_effective_domain_prefers_routing_domain() -> None:
    assert QueueName.parse("t@a.com!b.com:25").effective_domain == "b.com:25"
    assert QueueName.parse("t@a.com").effective_domain == "a.com"


@given(st.text())
def test_format_of_parse_is_identity(text: str) -> None:
    assert QueueName.parse(text).format() == text


_plain = st.text(st.characters(exclude_characters="@:!"), max_size=12)
_no_at = st.text(st.characters(exclude_characters="@"), max_size=12)


@given(
    campaign=st.none() | _plain,
    tenant=st.none() | _plain,
    tenant_after_campaign=_no_at,
    domain=st.text(st.characters(exclude_characters="@!"), max_size=12),
    routing_domain=st.none() | st.text(st.characters(exclude_characters="@"), max_size=12),
)
def test_parse_of_format_is_identity(
    campaign: str | None,
    tenant: str | None,
    tenant_after_campaign: str,
    domain: str,
    routing_domain: str | None,
) -> None:
    # With a campaign the tenant is always present (an unset one reads back as "").
    if campaign is not None:
        tenant = tenant_after_campaign
    name = QueueName(campaign, tenant, domain, routing_domain)
    assert QueueName.parse(name.format()) == name


def test_for_message_without_meta_is_the_domain() -> None:
    assert QueueName.for_message("Example.COM", {}) == "example.com"


def test_for_message_uses_tenant_campaign_routing_domain_verbatim() -> None:
    meta = {"tenant": "Acme", "campaign": "Spring Sale", "routing_domain": "Smart.Host:2525"}
    assert (
        QueueName.for_message("example.com", meta) == "Spring Sale:Acme@example.com!Smart.Host:2525"
    )


def test_for_message_campaign_without_tenant() -> None:
    assert QueueName.for_message("example.com", {"campaign": "c"}) == "c:@example.com"


def test_null_meta_values_count_as_unset() -> None:
    meta = {"tenant": None, "campaign": None, "routing_domain": None, "queue": None}
    assert QueueName.for_message("example.com", meta) == "example.com"


def test_queue_meta_overrides_everything() -> None:
    meta = {"queue": "my.smarthost.com", "tenant": "t", "campaign": "c", "routing_domain": "r"}
    assert QueueName.for_message("example.com", meta) == "my.smarthost.com"
    assert QueueName.for_message("example.com", {"queue": "[20.83.209.56]"}) == "[20.83.209.56]"


@pytest.mark.parametrize("key", ["queue", "tenant", "campaign", "routing_domain"])
def test_non_string_meta_is_an_error(key: str) -> None:
    with pytest.raises(QueueNameError, match=key):
        QueueName.for_message("example.com", {key: 42})


def test_idna_domains_become_a_labels() -> None:
    assert QueueName.for_message("Bücher.example", {}) == "xn--bcher-kva.example"
    assert normalize_recipient_domain("XN--BCHER-KVA.example") == "xn--bcher-kva.example"


def test_domain_literals_keep_brackets() -> None:
    assert normalize_recipient_domain("[10.0.0.1]") == "[10.0.0.1]"
    # KumoMTA lowercases the whole domain, tag included.
    assert normalize_recipient_domain("[IPv6:::1]") == "[ipv6:::1]"


def test_bad_recipient_domain_is_an_error() -> None:
    with pytest.raises(QueueNameError):
        QueueName.for_message("a..b", {})


def test_null_queue() -> None:
    assert is_null_queue("null")
    assert not is_null_queue("Null")
    assert is_null_queue(QueueName.for_message("example.com", {"queue": "null"}))
