"""What one SMTP client may make the policy thread do: refused recipients and failed AUTH
attempts end the session (421) at a limit, a listener domain the policy refused is not asked
again in the session, and a call that waited too long for a busy policy thread is answered
451 without running. Real SMTP clients (smtplib) against the real listener and policy; no
message reaches DATA, so no broker is needed (the acceptor is never started)."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import smtplib
import threading
from collections.abc import AsyncIterator

import pytest

from relaystream.core.policy.loader import policy_from_source
from relaystream.ingest.acceptor import AtomicAcceptor
from relaystream.ingest.reception import ReceptionPolicy
from relaystream.ingest.smtp_server import (
    MAX_AUTH_FAILURES,
    MAX_REFUSED_RECIPIENTS,
    SmtpListener,
    SmtpPolicy,
)
from relaystream.ingest.smtp_users import SmtpUsers

POLICY = """\
local kumo = require 'kumo'
local calls = 0
kumo.on('get_listener_domain', function(domain, listener, conn_meta)
  calls = calls + 1
  if domain == 'closed.example' then
    kumo.reject(550, '5.7.1 closed, call ' .. calls)
  end
end)
kumo.on('smtp_server_auth_plain', function(authz, authc, password, conn_meta)
  return false
end)
"""
OUTSIDE = "127.0.0.3"  # outside the relay network 127.0.0.1/32: its RCPTs are refused
QUEUE_SECONDS = 0.2


@pytest.fixture
async def listener() -> AsyncIterator[tuple[SmtpListener, ReceptionPolicy]]:
    reception = ReceptionPolicy(policy_from_source(POLICY, "policy.lua"), None, QUEUE_SECONDS)
    policy = SmtpPolicy(
        hostname="mx.ingest.test",
        relay_networks=(ipaddress.ip_network("127.0.0.1/32"),),
        max_message_size=1024 * 1024,
        max_recipients=100,
        max_connections=10,
        command_timeout=30.0,
        users=SmtpUsers({}),
    )
    acceptor = AtomicAcceptor(
        "127.0.0.1:9", topic="unused", transactional_id="unused", client_id="t", ack_timeout=1.0
    )
    smtp = SmtpListener(policy, acceptor, reception)
    await smtp.start("127.0.0.1", 0)
    try:
        yield smtp, reception
    finally:
        await smtp.stop(1.0)
        reception.close()


def rcpt_replies(port: int, client: str, recipients: list[str]) -> list[tuple[int, bytes]]:
    """Each RCPT's reply in one transaction; ends early when the server closes."""
    replies: list[tuple[int, bytes]] = []
    with smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=(client, 0)) as smtp:
        smtp.ehlo("client.example")
        smtp.mail("alice@other.org")
        for recipient in recipients:
            try:
                replies.append(smtp.rcpt(recipient))
            except smtplib.SMTPServerDisconnected:
                replies.append((-1, b"disconnected"))
                break
    return replies


def auth_replies(port: int, attempts: int) -> list[tuple[int, bytes]]:
    replies: list[tuple[int, bytes]] = []
    token = base64.b64encode(b"\0daniel\0wrong").decode()
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo("client.example")
        for _ in range(attempts):
            try:
                replies.append(smtp.docmd("AUTH", f"PLAIN {token}"))
            except smtplib.SMTPServerDisconnected:
                replies.append((-1, b"disconnected"))
                break
    return replies


async def test_a_session_is_closed_after_too_many_refused_recipients(
    listener: tuple[SmtpListener, ReceptionPolicy],
) -> None:
    smtp, _ = listener
    recipients = [f"r{index}@nowhere.example" for index in range(MAX_REFUSED_RECIPIENTS + 5)]
    replies = await asyncio.to_thread(rcpt_replies, smtp.port, OUTSIDE, recipients)
    assert (
        replies[:MAX_REFUSED_RECIPIENTS]
        == [(550, b"5.7.1 relaying denied")] * MAX_REFUSED_RECIPIENTS
    )
    assert replies[MAX_REFUSED_RECIPIENTS:] == [
        (421, b"4.7.0 mx.ingest.test too many refused recipients, closing the session"),
        (-1, b"disconnected"),
    ]


async def test_a_session_is_closed_after_too_many_failed_authentications(
    listener: tuple[SmtpListener, ReceptionPolicy],
) -> None:
    smtp, _ = listener
    replies = await asyncio.to_thread(auth_replies, smtp.port, MAX_AUTH_FAILURES + 3)
    assert (
        replies[:MAX_AUTH_FAILURES]
        == [(535, b"5.7.8 Authentication credentials invalid")] * MAX_AUTH_FAILURES
    )
    assert replies[MAX_AUTH_FAILURES:] == [
        (421, b"4.7.0 mx.ingest.test too many failed authentications, closing the session"),
        (-1, b"disconnected"),
    ]


async def test_a_refused_listener_domain_is_not_asked_again_in_the_session(
    listener: tuple[SmtpListener, ReceptionPolicy],
) -> None:
    smtp, _ = listener
    replies = await asyncio.to_thread(
        rcpt_replies, smtp.port, "127.0.0.1", ["a@closed.example", "b@closed.example"]
    )
    # Call 1 was the sender's domain, other.org; call 2 closed.example, once.
    assert replies == [(550, b"5.7.1 closed, call 2")] * 2


async def test_a_call_that_waits_too_long_for_the_policy_thread_is_answered_451(
    listener: tuple[SmtpListener, ReceptionPolicy],
) -> None:
    smtp, reception = listener
    started, release = threading.Event(), threading.Event()

    def hold_the_policy_thread() -> None:
        started.set()
        release.wait(60)

    holding = asyncio.ensure_future(reception.run(hold_the_policy_thread))
    await asyncio.to_thread(started.wait, 60)
    try:
        busy = await asyncio.to_thread(rcpt_replies, smtp.port, "127.0.0.1", ["a@closed.example"])
    finally:
        release.set()
        await holding
    after = await asyncio.to_thread(rcpt_replies, smtp.port, "127.0.0.1", ["a@closed.example"])
    assert busy == [(451, b"4.3.0 technical difficulties")]
    # The dropped calls never ran: the policy's first calls are this session's.
    assert after == [(550, b"5.7.1 closed, call 2")]
