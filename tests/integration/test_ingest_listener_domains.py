"""Listener domains at RCPT, as in KumoMTA: the policy's get_listener_domain for the sender's
domain (relay_from) and the recipient's (relay_to) lets a client outside the relay networks
relay; a failing handler answers 451 and kumo.reject its own reply. Real SMTP clients
(smtplib, from loopback addresses outside the relay network 127.0.0.1/32), the real ingest
and broker."""

from __future__ import annotations

import asyncio
import ipaddress
import smtplib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from ingest_harness import ingest_settings, read_events, running_ingest

from relaystream.core.kafka.admin import ensure_topics
from relaystream.core.kafka.topics import TopicCatalog, TopicSettings, declare_topics
from relaystream.core.runtime.settings import RoutingSettings, Settings

POLICY = """\
local kumo = require 'kumo'
kumo.on('get_listener_domain', function(domain, listener, conn_meta)
  if domain == 'open.example' then
    return kumo.make_listener_domain { relay_to = true }
  elseif domain == 'send.example' then
    return kumo.make_listener_domain { relay_from = { '127.0.0.4/32' } }
  elseif domain == 'reports.example' then
    return kumo.make_listener_domain { log_arf = 'LogThenDrop' }
  elseif domain == 'boom.example' then
    error('a bug in the listener domains')
  elseif domain == 'closed.example' then
    kumo.reject(550, '5.7.1 we take nothing for closed.example')
  end
end)
"""
MESSAGE = b"From: a@example.org\r\nSubject: hello\r\n\r\nbody line\r\n"
OUTSIDE = "127.0.0.3"  # outside the relay networks, in no relay_from
SENDER_NETWORK = "127.0.0.4"  # in send.example's relay_from


@pytest.fixture
async def topics(kafka_bootstrap: str, topic_prefix: str) -> TopicCatalog:
    catalog = declare_topics(TopicSettings(prefix=topic_prefix, partitions=1))
    await ensure_topics(kafka_bootstrap, catalog)
    return catalog


@pytest.fixture
def settings(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Settings:
    path = tmp_path / "policy.lua"
    path.write_text(POLICY, encoding="utf-8")
    base = ingest_settings(
        kafka_bootstrap, topic_prefix, relay_networks=(ipaddress.ip_network("127.0.0.1/32"),)
    )
    return replace(base, routing=RoutingSettings(policy_path=path))


def rcpt_replies(port: int, client: str, sender: str, recipients: list[str]) -> dict[str, Any]:
    """One transaction from `client`: each recipient's RCPT reply, and DATA's when any was
    taken."""
    replies: dict[str, Any] = {}
    with smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=(client, 0)) as smtp:
        smtp.ehlo("client.example")
        smtp.mail(sender)
        for recipient in recipients:
            replies[recipient] = smtp.rcpt(recipient)
        if any(code == 250 for code, _ in replies.values()):
            replies["DATA"] = smtp.data(MESSAGE)
    return replies


async def test_relay_to_and_relay_from_let_a_client_outside_the_relay_networks_relay(
    kafka_bootstrap: str,
    topics: TopicCatalog,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running_ingest(settings) as ingest:
        port = ingest.endpoints.smtp_port
        outside = await asyncio.to_thread(
            rcpt_replies,
            port,
            OUTSIDE,
            "alice@other.org",
            ["bob@open.example", "carol@else.org", "fbl@reports.example"],
        )
        from_network = await asyncio.to_thread(
            rcpt_replies, port, SENDER_NETWORK, "news@send.example", ["dave@else.org"]
        )
        from_elsewhere = await asyncio.to_thread(
            rcpt_replies, port, OUTSIDE, "news@send.example", ["erin@else.org"]
        )
        # relay_to: anyone may relay to open.example, and only there.
        assert outside["bob@open.example"][0] == 250
        assert outside["carol@else.org"] == (550, b"5.7.1 relaying denied")
        assert outside["DATA"][0] == 250
        # Reports are not parsed here: a domain that only logs them relays nothing (accepting
        # would drop the mail), and the operator is told.
        assert outside["fbl@reports.example"] == (550, b"5.7.1 relaying denied")
        assert any(
            "does not parse reports" in record.getMessage()
            and getattr(record, "domain", None) == "reports.example"
            for record in caplog.records
        )
        # relay_from: a client in the sender domain's networks relays anywhere; others not.
        assert from_network["dave@else.org"][0] == 250
        assert from_network["DATA"][0] == 250
        assert from_elsewhere == {"erin@else.org": (550, b"5.7.1 relaying denied")}
        events = await read_events(
            kafka_bootstrap, topics.accepted.name, 2, schema="MessageAccepted", settle_seconds=1.0
        )
    assert sorted(event["recipient"] for _, event in events) == [
        "bob@open.example",
        "dave@else.org",
    ]


async def test_a_failing_or_rejecting_get_listener_domain_is_the_answer_to_rcpt(
    topics: TopicCatalog, settings: Settings
) -> None:
    async with running_ingest(settings) as ingest:
        port = ingest.endpoints.smtp_port
        # From the relay network too: KumoMTA asks the policy about both domains at RCPT.
        replies = await asyncio.to_thread(
            rcpt_replies,
            port,
            "127.0.0.1",
            "alice@other.org",
            ["x@boom.example", "y@closed.example"],
        )
        sender_fails = await asyncio.to_thread(
            rcpt_replies, port, OUTSIDE, "alice@boom.example", ["bob@open.example"]
        )
    assert replies["x@boom.example"] == (451, b"4.3.0 technical difficulties")
    assert replies["y@closed.example"] == (550, b"5.7.1 we take nothing for closed.example")
    assert "DATA" not in replies
    assert sender_fails == {"bob@open.example": (451, b"4.3.0 technical difficulties")}
