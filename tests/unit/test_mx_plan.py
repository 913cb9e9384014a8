"""MX plans from plain DNS data: KumoMTA's site-name factoring, ordering, failures."""

import ipaddress
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relaystream.core.domain.mx_plan import (
    MxAnswer,
    MxAnswerKind,
    MxLookupFailed,
    MxPlan,
    MxRecord,
    ResolvedAddress,
    connection_order,
    factor_names,
    no_addresses_response,
    null_mx_response,
    plan_for_literal,
    plan_for_mx_list,
    plan_from_mx_answer,
    prohibited_response,
)
from relaystream.core.domain.queue_config import QueueConfig
from relaystream.core.domain.routing_target import RoutingTarget
from relaystream.core.domain.smtp_reply import EnhancedStatusCode


@pytest.mark.parametrize(
    ("names", "site"),
    [
        (
            ["mta5.am0.yahoodns.net", "mta6.am0.yahoodns.net", "mta7.am0.yahoodns.net"],
            "(mta5|mta6|mta7).am0.yahoodns.net",
        ),
        (
            ["mta5.AM0.yahoodns.net", "mta6.am0.yAHOodns.net", "mta7.am0.yahoodns.net"],
            "(mta5|mta6|mta7).am0.yahoodns.net",
        ),
        (
            [
                "gmail-smtp-in.l.google.com",
                "alt1.gmail-smtp-in.l.google.com",
                "alt2.gmail-smtp-in.l.google.com",
                "alt3.gmail-smtp-in.l.google.com",
                "alt4.gmail-smtp-in.l.google.com",
            ],
            "(alt1|alt2|alt3|alt4)?.gmail-smtp-in.l.google.com",
        ),
        (
            ["mta5.am0.yahoodns.net:123", "mta6.am0.yahoodns.net:123", "mta7.am0.yahoodns.net:123"],
            "(mta5|mta6|mta7).am0.yahoodns.net:123",
        ),
        (
            ["mta5.am0.yahoodns.net:123", "mta6.am0.yahoodns.net:456", "mta7.am0.yahoodns.net:123"],
            "(mta5|mta6|mta7).am0.yahoodns.(net:123|net:456)",
        ),
        # Order is kept: the same names in another order are another site.
        (
            [
                "example-com.mail.protection.outlook.com.",
                "mx-biz.mail.am0.yahoodns.net.",
                "mx-biz.mail.am0.yahoodns.net.",
            ],
            "(example-com|mx-biz).mail.(protection|am0).(outlook|yahoodns).(com|net)",
        ),
        (
            [
                "mx-biz.mail.am0.yahoodns.net.",
                "mx-biz.mail.am0.yahoodns.net.",
                "example-com.mail.protection.outlook.com.",
            ],
            "(mx-biz|example-com).mail.(am0|protection).(yahoodns|outlook).(net|com)",
        ),
        (["do.havedane.net."], "do.havedane.net"),
        (["."], ""),
        ([], ""),
        (["bad name", "ok.example"], "ok.example"),
    ],
)
def test_factor_names_matches_kumomta(names: list[str], site: str) -> None:
    assert factor_names(names) == site


GMAIL = MxAnswer(
    MxAnswerKind.RECORDS,
    (
        MxRecord(40, "alt4.gmail-smtp-in.l.google.com."),
        MxRecord(5, "gmail-smtp-in.l.google.com."),
        MxRecord(10, "alt1.gmail-smtp-in.l.google.com."),
        MxRecord(30, "alt3.gmail-smtp-in.l.google.com."),
        MxRecord(20, "alt2.gmail-smtp-in.l.google.com."),
    ),
)


def test_gmail_plan() -> None:
    plan = plan_from_mx_answer(RoutingTarget.classify("gmail.com"), GMAIL)
    assert plan.by_preference == (
        (5, ("gmail-smtp-in.l.google.com",)),
        (10, ("alt1.gmail-smtp-in.l.google.com",)),
        (20, ("alt2.gmail-smtp-in.l.google.com",)),
        (30, ("alt3.gmail-smtp-in.l.google.com",)),
        (40, ("alt4.gmail-smtp-in.l.google.com",)),
    )
    assert plan.site_name == "(alt1|alt2|alt3|alt4)?.gmail-smtp-in.l.google.com"
    assert plan.is_mx and not plan.is_null_mx


def test_hosts_lowercased_and_sorted_within_preference() -> None:
    answer = MxAnswer(
        MxAnswerKind.RECORDS,
        (MxRecord(10, "MTA7.am0.yahoodns.net."), MxRecord(10, "mta5.am0.yahoodns.net."),
         MxRecord(10, "mta6.AM0.yahoodns.net."), MxRecord(20, "backup.example.")),
    )  # fmt: skip
    plan = plan_from_mx_answer(RoutingTarget.classify("yahoo.com"), answer)
    assert plan.hosts == (
        "mta5.am0.yahoodns.net",
        "mta6.am0.yahoodns.net",
        "mta7.am0.yahoodns.net",
        "backup.example",
    )
    assert plan.site_name == "(mta5|mta6|mta7)?.am0?.(yahoodns|backup).(net|example)"


def test_sorting_uses_the_fully_qualified_form() -> None:
    answer = MxAnswer(MxAnswerKind.RECORDS, (MxRecord(1, "ab."), MxRecord(1, "ab-x.")))
    plan = plan_from_mx_answer(RoutingTarget.classify("d.example"), answer)
    # "ab-x." < "ab." byte-wise, as KumoMTA compares the names with their trailing dot.
    assert plan.hosts == ("ab-x", "ab")


def test_port_of_the_target_sticks_to_hosts_and_site() -> None:
    answer = MxAnswer(
        MxAnswerKind.RECORDS, (MxRecord(10, "mx1.example."), MxRecord(10, "mx2.example."))
    )
    plan = plan_from_mx_answer(RoutingTarget.classify("example.com:2525"), answer)
    assert plan.hosts == ("mx1.example:2525", "mx2.example:2525")
    assert plan.site_name == "(mx1|mx2).example:2525"


def test_nodata_gives_an_implicit_mx() -> None:
    plan = plan_from_mx_answer(
        RoutingTarget.classify("www.example.com"), MxAnswer(MxAnswerKind.NODATA)
    )
    assert plan.by_preference == ((1, ("www.example.com",)),)
    assert plan.site_name == "www.example.com"
    assert not plan.is_mx


def test_null_mx() -> None:
    answer = MxAnswer(MxAnswerKind.RECORDS, (MxRecord(0, "."),))
    plan = plan_from_mx_answer(RoutingTarget.classify("example.com"), answer)
    assert plan.is_null_mx
    assert plan.site_name == ""
    assert connection_order(plan, {}, random.Random(1)) == []
    response = null_mx_response()
    assert (response.code, response.enhanced_code) == (556, EnhancedStatusCode(5, 1, 10))
    assert response.content == "Recipient address has a null MX"


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        (MxAnswerKind.NXDOMAIN, "NXDOMAIN"),
        (MxAnswerKind.SERVFAIL, "DNSFAIL"),
        (MxAnswerKind.TIMEOUT, "DNSFAIL"),
    ],
)
def test_lookup_failures_are_transient(kind: MxAnswerKind, reason: str) -> None:
    with pytest.raises(MxLookupFailed) as caught:
        plan_from_mx_answer(RoutingTarget.classify("nope.example"), MxAnswer(kind))
    failure = caught.value
    assert failure.reason == reason
    assert failure.site_name == f"{reason}:nope.example"
    assert failure.response.code == 451
    assert failure.response.enhanced_code == EnhancedStatusCode(4, 4, 4)
    assert "nope.example" in failure.response.content


def test_literal_plan_needs_no_dns() -> None:
    plan = plan_for_literal(RoutingTarget.classify("[IPv6:::1]"))
    assert plan.site_name == "::1"
    assert plan.is_domain_literal
    assert connection_order(plan, {}, random.Random(1)) == [
        ResolvedAddress("::1", ipaddress.ip_address("::1"))
    ]
    with_port = plan_for_literal(RoutingTarget.classify("[10.0.0.1]:2525"))
    assert with_port.site_name == "10.0.0.1:2525"
    assert connection_order(with_port, {}, random.Random(1))[0].addr == "10.0.0.1:2525"


def test_mx_list_plan_keeps_configured_order() -> None:
    config = QueueConfig.from_mapping(
        {
            "protocol": {
                "smtp": {
                    "mx_list": [
                        "smart.host.local:2525",
                        {"name": "mx.example.com", "addr": "10.0.0.1"},
                        "[10.0.0.9]",
                    ]
                }
            }
        }
    )
    plan = plan_for_mx_list("example.com", config)
    assert plan.site_name == "mx_list:smart.host.local:2525,10.0.0.1,[10.0.0.9]"
    order = connection_order(
        plan, {"smart.host.local": ["192.0.2.1", "192.0.2.2"]}, random.Random(7)
    )
    assert [(a.name, a.addr) for a in order] == [
        ("smart.host.local", "192.0.2.1:2525"),
        ("smart.host.local", "192.0.2.2:2525"),
        ("mx.example.com", "10.0.0.1"),
        ("10.0.0.9", "10.0.0.9"),
    ]


def test_plan_for_mx_list_needs_a_list() -> None:
    with pytest.raises(ValueError):
        plan_for_mx_list("example.com", QueueConfig())


def _two_level_plan() -> MxPlan:
    answer = MxAnswer(
        MxAnswerKind.RECORDS,
        (MxRecord(10, "a.example."), MxRecord(10, "b.example."), MxRecord(20, "c.example.")),
    )
    return plan_from_mx_answer(RoutingTarget.classify("example.com"), answer)


ADDRESSES = {
    "a.example": ["192.0.2.1", "192.0.2.2"],
    "b.example": ["192.0.2.3", "2001:db8::3"],
    "c.example": ["192.0.2.9"],
}


def test_connection_order_shuffles_only_within_a_preference() -> None:
    plan = _two_level_plan()
    seen_first = set()
    for seed in range(30):
        order = connection_order(plan, ADDRESSES, random.Random(seed))
        assert len(order) == 5
        assert {a.addr for a in order[:4]} == {"192.0.2.1", "192.0.2.2", "192.0.2.3", "2001:db8::3"}
        assert order[4] == ResolvedAddress("c.example", ipaddress.ip_address("192.0.2.9"))
        seen_first.add(order[0].addr)
    assert len(seen_first) > 1


def test_connection_order_is_reproducible_with_a_seed() -> None:
    plan = _two_level_plan()
    assert connection_order(plan, ADDRESSES, random.Random(3)) == connection_order(
        plan, ADDRESSES, random.Random(3)
    )


def test_hosts_without_addresses_are_skipped() -> None:
    plan = _two_level_plan()
    order = connection_order(plan, {"c.example": ["192.0.2.9"]}, random.Random(1))
    assert [a.name for a in order] == ["c.example"]
    assert connection_order(plan, {}, random.Random(1)) == []
    assert no_addresses_response().code == 451


@pytest.mark.parametrize("ip", ["127.0.0.1", "127.1.2.3", "::1", "0.0.0.0", "::"])
def test_prohibited_destinations_bounce(ip: str) -> None:
    candidates = [
        ResolvedAddress("ok.example", ipaddress.ip_address("192.0.2.1")),
        ResolvedAddress("loop.example", ipaddress.ip_address(ip)),
    ]
    response = prohibited_response(candidates)
    assert response is not None
    assert (response.code, response.enhanced_code) == (550, EnhancedStatusCode(5, 4, 4))
    assert ip in response.content
    assert prohibited_response(candidates, allow_prohibited=True) is None


def test_public_destinations_are_allowed() -> None:
    candidates = [ResolvedAddress("ok.example", ipaddress.ip_address("192.0.2.1"))]
    assert prohibited_response(candidates) is None


@given(st.lists(st.from_regex(r"[a-z]{1,3}(\.[a-z]{1,3}){0,3}", fullmatch=True), max_size=6))
def test_single_name_factors_to_itself(names: list[str]) -> None:
    for name in names:
        assert factor_names([name]) == name
    if names:
        # Every label of every name appears in the site name.
        site = factor_names(names)
        for name in names:
            for label in name.split("."):
                assert label in site
