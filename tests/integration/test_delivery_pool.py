"""SMTP sessions and connection pools against real aiosmtpd peers on loopback."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from delivery_sinks import (
    Certificates,
    SmtpSink,
    make_certificates,
    make_pool,
    refused_port,
    start_banner_peer,
    start_sink,
)

from relaystream.core.domain.token_bucket import MessageRate
from relaystream.delivery.pool import (
    AllCandidatesFailed,
    ConnectionPool,
    PoolKey,
    PoolLimits,
    ReadyQueueSuspended,
    SiteGivenUp,
)
from relaystream.delivery.smtp_session import (
    Destination,
    PeerReply,
    SessionOptions,
)
from relaystream.delivery.tls import TlsMode

CONTENT = b"Subject: test\r\nFrom: a@example.com\r\n\r\nhello\r\n.leading dot\r\n"


def to(sink: SmtpSink, name: str = "sink.test") -> Destination:
    return Destination(peer_name=name, address=sink.host, port=sink.port)


async def deliver(
    pool: ConnectionPool, candidates: list[Destination], recipient: str = "rcpt@example.com"
) -> tuple[PeerReply, Destination, bool]:
    sent = await pool.send(candidates, "sender@example.com", recipient, CONTENT)
    return sent.reply, sent.destination, sent.tls


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    server = await start_sink(rcpt_replies={"later@example.com": "451 4.3.0 try later",
                                            "nobody@example.com": "550 5.1.1 no such user",
                                            "bye@example.com": "421 4.7.0 closing"})  # fmt: skip
    yield server
    await server.close()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


async def test_a_message_arrives_intact(sink: SmtpSink) -> None:
    pool = make_pool()
    reply, destination, tls = await deliver(pool, [to(sink)])
    await pool.aclose()
    assert reply.code == 250 and reply.command == "DATA"
    assert destination == to(sink)
    assert not tls
    [message] = sink.messages
    assert message.sender == "sender@example.com"
    assert message.recipients == ["rcpt@example.com"]
    assert message.content == CONTENT


async def test_sequential_deliveries_reuse_one_connection(sink: SmtpSink) -> None:
    pool = make_pool()
    for _ in range(5):
        reply, _, _ = await deliver(pool, [to(sink)])
        assert reply.code == 250
    assert pool.connections == 1
    await pool.aclose()
    assert sink.stats.connections_total == 1
    assert sink.stats.transactions_per_connection == [5]


async def test_connection_limit_is_honoured_under_concurrency() -> None:
    slow = await start_sink(data_delay=0.1)
    pool = make_pool(PoolLimits(connection_limit=2, idle_timeout=30.0))
    results = await asyncio.gather(*(deliver(pool, [to(slow)]) for _ in range(10)))
    await pool.aclose()
    await slow.close()
    assert all(reply.code == 250 for reply, _, _ in results)
    assert len(slow.messages) == 10
    assert slow.stats.connections_max_active == 2
    assert slow.stats.connections_total == 2


async def test_a_suspended_ready_queue_opens_no_connection_for_those_waiting() -> None:
    slow = await start_sink(data_delay=0.5)
    suspended: dict[str, str] = {}
    pool = ConnectionPool(
        PoolKey("unspecified", "site.test"),
        PoolLimits(connection_limit=1, idle_timeout=30.0),
        SessionOptions(ehlo_name="relay.test", tls_mode=TlsMode.DISABLED),
        suspended.get,
    )
    try:
        first = asyncio.create_task(deliver(pool, [to(slow)]))
        waiting = asyncio.create_task(deliver(pool, [to(slow)]))
        await slow.wait_for_active_connections(1)
        # Suspended while the second waits for the one connection: it gets none.
        suspended["unspecified->site.test@smtp_client"] = "blocked"
        assert (await first)[0].code == 250
        with pytest.raises(ReadyQueueSuspended, match="blocked"):
            await waiting
        with pytest.raises(ReadyQueueSuspended):
            await deliver(pool, [to(slow)])
        assert (slow.stats.connections_total, len(slow.messages)) == (1, 1)
        del suspended["unspecified->site.test@smtp_client"]
        assert (await deliver(pool, [to(slow)]))[0].code == 250
    finally:
        await pool.aclose()
        await slow.close()


async def test_a_connection_closes_after_max_deliveries(sink: SmtpSink) -> None:
    pool = make_pool(PoolLimits(max_deliveries_per_connection=2, idle_timeout=30.0))
    for _ in range(5):
        reply, _, _ = await deliver(pool, [to(sink)])
        assert reply.code == 250
    await pool.aclose()
    assert sink.stats.transactions_per_connection == [2, 2, 1]


async def test_an_idle_connection_is_closed_after_the_idle_timeout(sink: SmtpSink) -> None:
    pool = make_pool(PoolLimits(idle_timeout=0.3))
    await deliver(pool, [to(sink)])
    assert pool.connections == 1
    await sink.wait_for_active_connections(0, within=5.0)
    assert pool.connections == 0
    assert pool.is_unused
    # The next delivery opens a new connection.
    await deliver(pool, [to(sink)])
    await pool.aclose()
    assert sink.stats.connections_total == 2


async def test_a_refused_address_falls_back_to_the_next(sink: SmtpSink) -> None:
    pool = make_pool()
    refused = Destination("refused.test", "127.0.0.1", refused_port())
    reply, destination, _ = await deliver(pool, [refused, to(sink)])
    await pool.aclose()
    assert reply.code == 250
    assert destination == to(sink)


@pytest.mark.parametrize(
    "banner", [b"421 4.7.0 too busy\r\n", b"554 no service here\r\n", b"garbage\r\n"]
)
async def test_a_bad_banner_falls_back_to_the_next(sink: SmtpSink, banner: bytes) -> None:
    peer = await start_banner_peer(banner)
    pool = make_pool()
    first = Destination("busy.test", "127.0.0.1", peer.port)
    reply, destination, _ = await deliver(pool, [first, to(sink)])
    await pool.aclose()
    await peer.close()
    assert peer.connections == 1
    assert reply.code == 250
    assert destination == to(sink)


async def test_every_candidate_failing_names_each_reason() -> None:
    peer = await start_banner_peer(b"421 4.7.0 too busy\r\n")
    pool = make_pool()
    candidates = [
        Destination("refused.test", "127.0.0.1", refused_port()),
        Destination("busy.test", "127.0.0.1", peer.port),
    ]
    with pytest.raises(AllCandidatesFailed) as failed:
        await deliver(pool, candidates)
    await peer.close()
    assert [f.destination for f in failed.value.failures] == candidates
    assert "connect failed" in failed.value.failures[0].reason
    assert "421" in failed.value.failures[1].reason
    # A failed open gives its slot back.
    assert pool.connections == 0
    await pool.aclose()


async def test_rejections_come_back_as_the_peer_said_them(sink: SmtpSink) -> None:
    pool = make_pool()
    later, _, _ = await deliver(pool, [to(sink)], "later@example.com")
    nobody, _, _ = await deliver(pool, [to(sink)], "nobody@example.com")
    fine, _, _ = await deliver(pool, [to(sink)], "rcpt@example.com")
    await pool.aclose()
    assert (later.code, later.text, later.command) == (
        451,
        "4.3.0 try later",
        "RCPT TO:<later@example.com>",
    )
    assert (nobody.code, nobody.text) == (550, "5.1.1 no such user")
    assert fine.code == 250
    # Refusals leave the session usable: RSET, then the next transaction on the same one.
    assert sink.stats.connections_total == 1
    assert len(sink.messages) == 1


async def test_a_421_reply_closes_the_connection(sink: SmtpSink) -> None:
    pool = make_pool()
    reply, _, _ = await deliver(pool, [to(sink)], "bye@example.com")
    assert reply.code == 421
    assert pool.connections == 0
    await deliver(pool, [to(sink)])
    await pool.aclose()
    assert sink.stats.connections_total == 2


async def test_required_tls_fails_against_a_peer_without_starttls(sink: SmtpSink) -> None:
    pool = make_pool(mode=TlsMode.REQUIRED)
    with pytest.raises(AllCandidatesFailed) as failed:
        await deliver(pool, [to(sink)])
    await pool.aclose()
    assert "STARTTLS is not offered" in failed.value.failures[0].reason
    assert sink.messages == []


async def test_disabled_tls_never_starts_tls(certificates: Certificates) -> None:
    tls_sink = await start_sink(tls_context=certificates.server_context(self_signed=False))
    pool = make_pool(mode=TlsMode.DISABLED)
    reply, _, tls = await deliver(pool, [to(tls_sink, "mx.sink.test")])
    await pool.aclose()
    await tls_sink.close()
    assert reply.code == 250
    assert not tls
    assert not tls_sink.messages[0].tls


async def test_opportunistic_rejects_a_self_signed_certificate_and_moves_on(
    sink: SmtpSink, certificates: Certificates
) -> None:
    tls_sink = await start_sink(tls_context=certificates.server_context(self_signed=True))
    pool = make_pool(mode=TlsMode.OPPORTUNISTIC)
    reply, destination, tls = await deliver(pool, [to(tls_sink, "mx.sink.test"), to(sink)])
    await pool.aclose()
    await tls_sink.close()
    assert reply.code == 250
    assert destination == to(sink)
    assert not tls
    assert tls_sink.messages == []


async def test_opportunistic_insecure_accepts_a_self_signed_certificate(
    certificates: Certificates,
) -> None:
    tls_sink = await start_sink(tls_context=certificates.server_context(self_signed=True))
    pool = make_pool(mode=TlsMode.OPPORTUNISTIC_INSECURE)
    sent = await pool.send(
        [to(tls_sink, "mx.sink.test")], "sender@example.com", "rcpt@example.com", CONTENT
    )
    again = await pool.send(
        [to(tls_sink, "mx.sink.test")], "sender@example.com", "rcpt@example.com", CONTENT
    )
    await pool.aclose()
    await tls_sink.close()
    assert sent.reply.code == 250
    assert sent.tls
    assert tls_sink.messages[0].tls
    # What the log record says about the session: the real TLS session's parameters (the
    # subject read from the unvalidated certificate), our end of the socket, one id per session.
    facts = sent.session
    assert facts.tls is not None
    assert facts.tls.protocol_version in ("TLSv1.2", "TLSv1.3")
    assert facts.tls.cipher and facts.tls.cipher.isupper()
    assert facts.tls.peer_subject_name == ("CN=mx.sink.test",)
    assert facts.source_address is not None
    assert facts.source_address.startswith("127.0.0.1:")
    assert uuid.UUID(facts.session_id).version == 4
    assert again.session == facts  # the same pooled session


async def test_a_plain_session_has_no_tls_facts_and_its_own_id(sink: SmtpSink) -> None:
    first, second = make_pool(), make_pool()
    sent = await first.send([to(sink)], "sender@example.com", "rcpt@example.com", CONTENT)
    other = await second.send([to(sink)], "sender@example.com", "rcpt@example.com", CONTENT)
    await first.aclose()
    await second.aclose()
    assert sent.session.tls is None
    assert sent.session.session_id != other.session.session_id
    assert sent.session.source_address != other.session.source_address


@pytest.mark.parametrize("mode", [TlsMode.OPPORTUNISTIC, TlsMode.REQUIRED])
async def test_validating_modes_accept_a_trusted_certificate_for_the_peer_name(
    certificates: Certificates, mode: TlsMode
) -> None:
    tls_sink = await start_sink(tls_context=certificates.server_context(self_signed=False))
    pool = make_pool(mode=mode, ca_file=certificates.ca_cert)
    reply, _, tls = await deliver(pool, [to(tls_sink, "mx.sink.test")])
    await pool.aclose()
    assert reply.code == 250
    assert tls
    # The same certificate does not match another peer name: validation includes the name.
    wrong_name = make_pool(mode=mode, ca_file=certificates.ca_cert)
    with pytest.raises(AllCandidatesFailed) as failed:
        await deliver(wrong_name, [to(tls_sink, "other.test")])
    await wrong_name.aclose()
    await tls_sink.close()
    assert "TLS handshake failed" in failed.value.failures[0].reason


async def test_required_insecure_uses_tls_with_a_self_signed_certificate(
    certificates: Certificates,
) -> None:
    tls_sink = await start_sink(tls_context=certificates.server_context(self_signed=True))
    pool = make_pool(mode=TlsMode.REQUIRED_INSECURE)
    reply, _, tls = await deliver(pool, [to(tls_sink, "mx.sink.test")])
    await pool.aclose()
    await tls_sink.close()
    assert reply.code == 250 and tls


async def test_a_stale_idle_connection_is_replaced_transparently(sink: SmtpSink) -> None:
    pool = make_pool()
    await deliver(pool, [to(sink)])
    # The peer drops the idle connection (as servers do after their own idle timeout).
    await sink.close()
    restarted = await start_sink(port=sink.port)
    reply, _, _ = await deliver(pool, [to(restarted)])
    await pool.aclose()
    await restarted.close()
    assert reply.code == 250
    assert len(restarted.messages) == 1


async def test_a_retired_pool_gives_its_site_up(sink: SmtpSink) -> None:
    """At a rebalance another process may take the site over: idle sessions close at once,
    a session lent out closes when it comes back, and a delivery waiting for a session
    gives up (SiteGivenUp) instead of sending after the handover."""
    pool = make_pool(PoolLimits(connection_limit=1, idle_timeout=30.0))
    await deliver(pool, [to(sink)])
    assert pool.idle_connections == 1
    await pool.retire()
    assert (pool.connections, pool.idle_connections) == (0, 0)
    await sink.wait_for_active_connections(0)

    async with pool.lease([to(sink)]):
        waiting = asyncio.create_task(deliver(pool, [to(sink)]))
        await asyncio.sleep(0)  # let it queue for the only session
        await pool.retire()
        with pytest.raises(SiteGivenUp):
            await waiting
    # The lent session was opened before the retirement: closed, not pooled.
    assert pool.connections == 0
    await sink.wait_for_active_connections(0)
    await pool.aclose()


async def test_a_message_rate_starts_with_an_empty_bucket(sink: SmtpSink) -> None:
    """A new owner of a site may follow one that just spent its burst: it starts empty, so
    its first message waits for a token."""
    pool = make_pool(PoolLimits(message_rate=MessageRate(1000, 1000)))
    await deliver(pool, [to(sink)])
    assert pool.throttled_messages == 1
    await pool.aclose()


async def test_a_pool_reports_its_ready_queue_states(sink: SmtpSink) -> None:
    pool = make_pool(PoolLimits(connection_limit=1, message_rate=MessageRate(1000, 1000)))
    async with pool.lease([to(sink)]):
        waiting = asyncio.create_task(deliver(pool, [to(sink)]))
        for _ in range(100):
            await asyncio.sleep(0.01)
            if "connection_limited" in pool.states:
                break
        assert set(pool.states) == {"connection_limited"}
        assert pool.ready_count == 1
    await waiting
    assert (pool.states, pool.ready_count) == ({}, 0)
    await pool.aclose()
