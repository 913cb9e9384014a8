"""Outbound PIPELINING (RFC 2920) against real peers on loopback.

A peer that offers PIPELINING gets RSET (on reuse), MAIL, RCPT and DATA in one write. The
scripted peers below answer only once the whole envelope has arrived, so a client that waited
for each reply would time out instead of delivering.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from delivery_sinks import (
    ScriptedPeer,
    SmtpSink,
    make_certificates,
    make_pool,
    start_scripted_peer,
    start_sink,
)

from relaystream.delivery.pool import ConnectionPool
from relaystream.delivery.smtp_session import (
    Destination,
    PeerReply,
    SessionTimeouts,
)
from relaystream.delivery.tls import TlsMode

CONTENT = b"Subject: pipelined\r\n\r\nline one\r\n.starts with a dot\r\nlast line\r\n"
EHLO_REPLY = b"250-peer.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n"


async def send(pool: ConnectionPool, port: int, recipient: str = "rcpt@example.com") -> PeerReply:
    destination = Destination(peer_name="peer.test", address="127.0.0.1", port=port)
    sent = await pool.send([destination], "sender@example.com", recipient, CONTENT)
    return sent.reply


async def read_lines_until(reader: asyncio.StreamReader, last: bytes) -> list[bytes]:
    """Every line the client sent up to and including `last`, read before answering any."""
    lines: list[bytes] = []
    while not lines or lines[-1] != last:
        line = await reader.readline()
        if not line:
            raise ConnectionError(f"client closed after {lines!r}")
        lines.append(line)
    return lines


async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Banner and EHLO, offering PIPELINING."""
    writer.write(b"220 peer.test ready\r\n")
    await read_lines_until(reader, b"EHLO relay.test\r\n")
    writer.write(EHLO_REPLY)


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    server = await start_sink(
        pipelining=True,
        rcpt_replies={
            "nobody@example.com": "550 5.1.1 no such user",
            "bye@example.com": "421 4.7.0 closing",
        },
    )
    yield server
    await server.close()


async def test_the_envelope_goes_in_one_write_and_rset_only_on_reuse() -> None:
    envelopes: list[list[bytes]] = []
    bodies: list[bytes] = []

    async def conversation(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await greet(reader, writer)
        for _ in range(2):
            envelope = await read_lines_until(reader, b"DATA\r\n")
            envelopes.append(envelope)
            writer.write(b"250 2.0.0 ok\r\n" * (len(envelope) - 1) + b"354 go ahead\r\n")
            bodies.append(await reader.readuntil(b"\r\n.\r\n"))
            writer.write(b"250 2.0.0 queued\r\n")
        await read_lines_until(reader, b"QUIT\r\n")
        writer.write(b"221 bye\r\n")

    peer = await start_scripted_peer(conversation)
    pool = make_pool()
    first = await send(pool, peer.port)
    second = await send(pool, peer.port)
    await pool.aclose()
    await peer.close()
    assert peer.errors == []
    assert (first.code, first.command) == (250, "DATA")
    assert (second.code, second.command) == (250, "DATA")
    mail_rcpt_data = [
        b"MAIL FROM:<sender@example.com>\r\n",
        b"RCPT TO:<rcpt@example.com>\r\n",
        b"DATA\r\n",
    ]
    assert envelopes == [mail_rcpt_data, [b"RSET\r\n", *mail_rcpt_data]]
    stuffed = b"Subject: pipelined\r\n\r\nline one\r\n..starts with a dot\r\nlast line\r\n.\r\n"
    assert bodies == [stuffed, stuffed]


async def test_with_pipelining_disabled_each_command_waits_for_its_reply() -> None:
    waited: list[bytes] = []

    async def conversation(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await greet(reader, writer)  # offers PIPELINING
        for reply in (b"250 ok\r\n", b"250 ok\r\n", b"354 go ahead\r\n"):
            command = await reader.readline()
            # Nothing more may arrive before this command is answered.
            with contextlib.suppress(TimeoutError):
                command += await asyncio.wait_for(reader.readline(), 0.2)
            waited.append(command)
            writer.write(reply)
        await reader.readuntil(b"\r\n.\r\n")
        writer.write(b"250 2.0.0 queued\r\n")
        await read_lines_until(reader, b"QUIT\r\n")
        writer.write(b"221 bye\r\n")

    peer = await start_scripted_peer(conversation)
    pool = make_pool(pipelining=False)
    reply = await send(pool, peer.port)
    await pool.aclose()
    await peer.close()
    assert peer.errors == []
    assert reply.code == 250
    assert waited == [
        b"MAIL FROM:<sender@example.com>\r\n",
        b"RCPT TO:<rcpt@example.com>\r\n",
        b"DATA\r\n",
    ]


async def test_a_354_after_a_refused_recipient_is_ended_with_a_lone_dot() -> None:
    after_data: list[bytes] = []

    async def conversation(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await greet(reader, writer)
        await read_lines_until(reader, b"DATA\r\n")
        # RFC 2920 3.1: a server may accept DATA even though no recipient was accepted.
        writer.write(b"250 2.1.0 ok\r\n550 5.1.1 no such user\r\n354 go ahead\r\n")
        after_data.append(await reader.readline())
        writer.write(b"554 5.5.1 no valid recipients\r\n")
        await read_lines_until(reader, b"QUIT\r\n")
        writer.write(b"221 bye\r\n")

    peer = await start_scripted_peer(conversation)
    pool = make_pool()
    reply = await send(pool, peer.port, "nobody@example.com")
    await pool.aclose()
    await peer.close()
    assert peer.errors == []
    assert reply == PeerReply(550, "5.1.1 no such user", "RCPT TO:<nobody@example.com>")
    assert after_data == [b".\r\n"]  # no content went to a transaction without recipients


async def test_a_peer_that_closes_mid_envelope_is_a_lost_connection() -> None:
    async def conversation(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await greet(reader, writer)
        await read_lines_until(reader, b"DATA\r\n")
        writer.write(b"250 2.1.0 ok\r\n")  # then goes away without the other replies

    peer = await start_scripted_peer(conversation)
    pool = make_pool()
    reply = await send(pool, peer.port)
    await pool.aclose()
    await peer.close()
    # The transaction had begun: whether it was accepted is unknown, so it is retried later.
    assert reply.code == 421 and reply.text.startswith("4.4.2 peer.test connection lost")
    assert pool.connections == 0


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (b"250 ok\r\nthis is not smtp\r\n", "malformed reply"),
        # The reply queue is bounded: a peer cannot make us buffer without end.
        (b"250 again and again\r\n" * 1000, "replies nobody asked for"),
    ],
)
async def test_a_peer_answering_garbage_is_a_lost_connection(answer: bytes, reason: str) -> None:
    async def conversation(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await greet(reader, writer)
        await read_lines_until(reader, b"DATA\r\n")
        writer.write(answer)
        await reader.read()

    peer = await start_scripted_peer(conversation)
    pool = make_pool()
    reply = await send(pool, peer.port)
    await pool.aclose()
    await peer.close()
    assert reply.code == 421 and reason in reply.text
    assert pool.connections == 0


async def test_a_silent_peer_times_out_with_a_lost_connection() -> None:
    async def conversation(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await greet(reader, writer)
        await reader.read()  # never answers the envelope

    peer = await start_scripted_peer(conversation)
    pool = make_pool(timeouts=SessionTimeouts(connect=5.0, banner=5.0, command=0.5))
    reply = await send(pool, peer.port)
    await pool.aclose()
    await peer.close()
    assert reply.code == 421 and "no reply within 0.5 s" in reply.text


async def test_messages_arrive_intact_over_one_pipelined_connection(sink: SmtpSink) -> None:
    pool = make_pool()
    replies = [await send(pool, sink.port) for _ in range(5)]
    await pool.aclose()
    assert [reply.code for reply in replies] == [250] * 5
    assert [message.content for message in sink.messages] == [CONTENT] * 5
    assert sink.stats.transactions_per_connection == [5]


async def test_pipelining_under_tls_delivers_over_one_connection(tmp_path: Path) -> None:
    certificates = make_certificates(tmp_path)
    tls_sink = await start_sink(
        tls_context=certificates.server_context(self_signed=True), pipelining=True
    )
    pool = make_pool(mode=TlsMode.REQUIRED_INSECURE)
    destination = Destination(peer_name="mx.sink.test", address="127.0.0.1", port=tls_sink.port)
    sent = [
        await pool.send([destination], "sender@example.com", "rcpt@example.com", CONTENT)
        for _ in range(3)
    ]
    await pool.aclose()
    await tls_sink.close()
    assert [(s.reply.code, s.tls) for s in sent] == [(250, True)] * 3
    assert [m.content for m in tls_sink.messages] == [CONTENT] * 3
    assert all(m.tls for m in tls_sink.messages)
    assert tls_sink.stats.transactions_per_connection == [3]


async def test_a_refusal_leaves_the_pipelined_session_usable(sink: SmtpSink) -> None:
    pool = make_pool()
    refused = await send(pool, sink.port, "nobody@example.com")
    delivered = await send(pool, sink.port)
    await pool.aclose()
    assert refused == PeerReply(550, "5.1.1 no such user", "RCPT TO:<nobody@example.com>")
    assert delivered.code == 250
    assert [message.recipients for message in sink.messages] == [["rcpt@example.com"]]
    assert sink.stats.connections_total == 1


async def test_a_421_to_a_pipelined_recipient_closes_the_session(sink: SmtpSink) -> None:
    pool = make_pool()
    reply = await send(pool, sink.port, "bye@example.com")
    assert reply.code == 421 and reply.command == "RCPT TO:<bye@example.com>"
    assert pool.connections == 0
    delivered = await send(pool, sink.port)
    await pool.aclose()
    assert delivered.code == 250
    assert sink.stats.connections_total == 2


async def test_a_stale_pipelined_session_is_replaced_transparently(sink: SmtpSink) -> None:
    pool = make_pool()
    assert (await send(pool, sink.port)).code == 250
    await sink.close()
    restarted: ScriptedPeer | SmtpSink = await start_sink(port=sink.port, pipelining=True)
    reply = await send(pool, sink.port)
    await pool.aclose()
    await restarted.close()
    assert reply.code == 250
    assert isinstance(restarted, SmtpSink) and len(restarted.messages) == 1


async def test_replies_queued_before_the_tls_handshake_are_discarded(tmp_path: Path) -> None:
    certificates = make_certificates(tmp_path)
    envelopes: list[list[bytes]] = []

    async def conversation(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 peer.test ready\r\n")
        await read_lines_until(reader, b"EHLO relay.test\r\n")
        writer.write(b"250-peer.test\r\n250 STARTTLS\r\n")
        await read_lines_until(reader, b"STARTTLS\r\n")
        # As a man in the middle would: a reply queued behind the 220, in plaintext. Taken as
        # the answer to the EHLO under TLS, it would hide PIPELINING (and the envelope below
        # would never be answered).
        writer.write(b"220 go ahead\r\n250 injected\r\n")
        await writer.start_tls(certificates.server_context(self_signed=True))
        await read_lines_until(reader, b"EHLO relay.test\r\n")
        writer.write(EHLO_REPLY)
        envelopes.append(await read_lines_until(reader, b"DATA\r\n"))
        writer.write(b"250 ok\r\n250 ok\r\n354 go ahead\r\n")
        await reader.readuntil(b"\r\n.\r\n")
        writer.write(b"250 2.0.0 queued\r\n")
        await read_lines_until(reader, b"QUIT\r\n")
        writer.write(b"221 bye\r\n")

    peer = await start_scripted_peer(conversation)
    pool = make_pool(mode=TlsMode.REQUIRED_INSECURE)
    destination = Destination(peer_name="peer.test", address="127.0.0.1", port=peer.port)
    sent = await pool.send([destination], "sender@example.com", "rcpt@example.com", CONTENT)
    await pool.aclose()
    await peer.close()
    assert peer.errors == []
    assert (sent.reply.code, sent.tls) == (250, True)
    assert len(envelopes) == 1 and envelopes[0][-1] == b"DATA\r\n"
