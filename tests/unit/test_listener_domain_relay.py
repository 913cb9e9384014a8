"""KumoMTA's relaying check at RCPT (relay_decision): relay hosts, the sender domain's
relay_from, the recipient domain's relay_to; and a kumo.reject in get_listener_domain kept
with its code and text for the SMTP reply."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relaystream.core.domain.listener_domain import (
    ListenerDomain,
    ReportHandling,
    relay_decision,
)
from relaystream.core.policy import PolicyRejected, PolicyRuntimeError, policy_from_source

PEER = ipaddress.ip_address("10.0.0.7")
NETWORKS = st.sampled_from(["10.0.0.0/24", "10.0.1.0/24", "::1/128", "0.0.0.0/0"])
REPORTS = st.sampled_from(list(ReportHandling))
DOMAINS = st.none() | st.builds(
    lambda relay_to, networks, oob, arf: ListenerDomain(
        relay_to=relay_to,
        relay_from=tuple(ipaddress.ip_network(n) for n in networks),
        log_oob=oob,
        log_arf=arf,
    ),
    st.booleans(),
    st.lists(NETWORKS, max_size=2),
    REPORTS,
    REPORTS,
)


@given(relay_hosts=st.booleans(), sender=DOMAINS, recipient=DOMAINS)
def test_a_recipient_relays_when_any_of_kumomtas_three_rules_allows_it(
    relay_hosts: bool, sender: ListenerDomain | None, recipient: ListenerDomain | None
) -> None:
    decision = relay_decision(
        PEER, relay_hosts=relay_hosts, sender_domain=sender, recipient_domain=recipient
    )
    from_sender = sender is not None and any(PEER in net for net in sender.relay_from)
    to_recipient = recipient is not None and recipient.relay_to
    assert decision.relays == (relay_hosts or from_sender or to_recipient)
    # Report logging alone never accepts a recipient: relaystream parses no reports.
    assert decision.reports_asked == (
        recipient is not None
        and (recipient.log_oob, recipient.log_arf) != (ReportHandling.IGNORE,) * 2
    )


def test_relay_from_is_the_senders_domain_and_relay_to_the_recipients() -> None:
    sending = ListenerDomain(relay_from=(ipaddress.ip_network("10.0.0.0/24"),))
    open_to_all = ListenerDomain(relay_to=True)
    as_sender = relay_decision(
        PEER, relay_hosts=False, sender_domain=sending, recipient_domain=None
    )
    assert as_sender.relays and as_sender.relay_from
    # relay_to of the sender's domain, or relay_from of the recipient's, relays nothing.
    crossed = relay_decision(
        PEER, relay_hosts=False, sender_domain=open_to_all, recipient_domain=sending
    )
    assert not crossed.relays
    outside = ipaddress.ip_address("192.0.2.1")
    assert not relay_decision(
        outside, relay_hosts=False, sender_domain=sending, recipient_domain=None
    ).relays


def test_kumo_reject_in_get_listener_domain_keeps_its_code_and_text() -> None:
    policy = policy_from_source(
        "kumo.on('get_listener_domain', function(domain, listener, conn_meta)\n"
        "  kumo.reject(550, '5.7.1 not for ' .. domain)\n"
        "end)\n",
        "policy.lua",
    )
    with pytest.raises(PolicyRuntimeError) as caught:
        policy.get_listener_domain("x.org", "127.0.0.1:25", {})
    assert caught.value.reason == "reject"
    assert caught.value.rejection == PolicyRejected(550, "5.7.1 not for x.org")
