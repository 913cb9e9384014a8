"""Real SMTP peers on loopback for the delivery tests: aiosmtpd sinks, raw banners, certs.

`start_sink` runs an aiosmtpd server in the test's event loop that records every message and
every connection (so tests can check reuse and limits), answers RCPT per recipient as told,
offers STARTTLS when given a TLS context and PIPELINING when asked. `start_banner_peer`
accepts connections and greets with whatever banner it is given (421, garbage);
`start_scripted_peer` runs a conversation the test writes, for what aiosmtpd never does.
`make_pool` is a connection pool with short timeouts for talking to them.
`refused_port` is a loopback port nobody listens on. `make_certificates` makes a CA, a leaf
it signed and a self-signed leaf with the openssl command.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from relaystream.delivery.pool import ConnectionPool, PoolKey, PoolLimits
from relaystream.delivery.smtp_session import SessionOptions, SessionTimeouts
from relaystream.delivery.tls import TlsMode
from relaystream_devkit.sink import OffersPipelining

FAST = SessionTimeouts(connect=5.0, banner=5.0, command=10.0)


@dataclass
class ReceivedMessage:
    sender: str
    recipients: list[str]
    content: bytes
    peer: Any
    tls: bool
    # When the sink accepted it (time.monotonic()): rate checks.
    received_at: float = field(default_factory=time.monotonic)


@dataclass
class SinkStats:
    connections_total: int = 0
    connections_active: int = 0
    connections_max_active: int = 0
    transactions_per_connection: list[int] = field(default_factory=list)
    # Open connections, so that closing the sink can drop them as a restarting peer would.
    transports: set[asyncio.BaseTransport] = field(default_factory=set)


class _RecordingHandler:
    def __init__(self, rcpt_replies: dict[str, str], data_reply: str, data_delay: float) -> None:
        self.rcpt_replies = rcpt_replies
        # How many more times a reply in `rcpt_replies` is given; absent: until removed.
        self.rcpt_reply_times: dict[str, int] = {}
        self.data_reply = data_reply
        self.data_delay = data_delay
        self.messages: list[ReceivedMessage] = []

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.rcpt_replies.get(address)
        if reply is not None:
            left = self.rcpt_reply_times.get(address)
            if left is not None:
                if left <= 1:
                    del self.rcpt_replies[address], self.rcpt_reply_times[address]
                else:
                    self.rcpt_reply_times[address] = left - 1
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        content = envelope.original_content or b""
        self.messages.append(
            ReceivedMessage(
                sender=str(envelope.mail_from),
                recipients=list(envelope.rcpt_tos),
                content=content,
                peer=session.peer,
                tls=session.ssl is not None,
            )
        )
        return self.data_reply


class _PipeliningHandler(OffersPipelining, _RecordingHandler):
    pass


class _CountingSMTP(SMTP):
    """aiosmtpd's SMTP that counts connections and transactions per connection."""

    def __init__(self, stats: SinkStats, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stats = stats
        self._counted = False
        self._index = -1
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Called again after STARTTLS on the same connection: count the first call only.
        if not self._counted:
            self._counted = True
            self._stats.connections_total += 1
            self._stats.connections_active += 1
            self._stats.connections_max_active = max(
                self._stats.connections_max_active, self._stats.connections_active
            )
            self._index = len(self._stats.transactions_per_connection)
            self._stats.transactions_per_connection.append(0)
            self._stats.transports.add(transport)
            self._transport = transport
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted:
            self._stats.connections_active -= 1
            self._stats.transports.discard(self._transport)
            self._counted = False
        super().connection_lost(error)

    async def smtp_DATA(self, arg: str) -> None:
        await super().smtp_DATA(arg)
        self._stats.transactions_per_connection[self._index] += 1


class SmtpSink:
    """A running sink: its port, what it received, how it was connected to."""

    def __init__(self, server: asyncio.Server, handler: _RecordingHandler, stats: SinkStats):
        self._server = server
        self._handler = handler
        self.stats = stats
        sockname = server.sockets[0].getsockname()
        self.host: str = sockname[0]
        self.port: int = sockname[1]

    @property
    def messages(self) -> list[ReceivedMessage]:
        return self._handler.messages

    def answer_rcpt(self, recipient: str, reply: str, *, times: int | None = None) -> None:
        """RCPT TO `recipient` gets `reply`: the next `times` times, or until `accept_rcpt`."""
        self._handler.rcpt_replies[recipient] = reply
        if times is None:
            self._handler.rcpt_reply_times.pop(recipient, None)
        else:
            self._handler.rcpt_reply_times[recipient] = times

    def accept_rcpt(self, recipient: str) -> None:
        """RCPT TO `recipient` is accepted again."""
        self._handler.rcpt_replies.pop(recipient, None)
        self._handler.rcpt_reply_times.pop(recipient, None)

    async def close(self) -> None:
        """Stop listening and drop every open connection."""
        self._server.close()
        for transport in list(self.stats.transports):
            transport.close()
        await self._server.wait_closed()

    async def wait_for_active_connections(self, count: int, within: float = 10.0) -> None:
        """Until exactly `count` connections are open (polling: aiosmtpd has no event)."""
        async with asyncio.timeout(within):
            while self.stats.connections_active != count:  # noqa: ASYNC110
                await asyncio.sleep(0.01)


async def start_sink(
    host: str = "127.0.0.1",
    *,
    port: int = 0,
    tls_context: ssl.SSLContext | None = None,
    rcpt_replies: dict[str, str] | None = None,
    data_reply: str = "250 2.0.0 queued as sink",
    data_delay: float = 0.0,
    hostname: str = "sink.test",
    pipelining: bool = False,
) -> SmtpSink:
    kind = _PipeliningHandler if pipelining else _RecordingHandler
    handler = kind(dict(rcpt_replies or {}), data_reply, data_delay)
    stats = SinkStats()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _CountingSMTP(
            stats,
            handler,
            hostname=hostname,
            tls_context=tls_context,
            enable_SMTPUTF8=True,
        ),
        host,
        port,
    )
    return SmtpSink(server, handler, stats)


class BannerPeer:
    """Greets every connection with a fixed banner, then reads until the client goes away."""

    def __init__(self, server: asyncio.Server) -> None:
        self._server = server
        self.port: int = server.sockets[0].getsockname()[1]
        self.connections = 0

    async def close(self) -> None:
        self._server.close()
        await self._server.wait_closed()


async def start_banner_peer(banner: bytes, host: str = "127.0.0.1") -> BannerPeer:
    peer: BannerPeer | None = None

    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert peer is not None
        peer.connections += 1
        writer.write(banner)
        await writer.drain()
        while await reader.read(4096):
            pass
        writer.close()

    server = await asyncio.start_server(greet, host, 0)
    peer = BannerPeer(server)
    return peer


class ScriptedPeer:
    """Runs `conversation(reader, writer)` for every connection; `errors` collects what failed."""

    def __init__(self, server: asyncio.Server) -> None:
        self._server = server
        self.port: int = server.sockets[0].getsockname()[1]
        self.errors: list[BaseException] = []

    async def close(self) -> None:
        self._server.close()
        await self._server.wait_closed()


Conversation = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def start_scripted_peer(conversation: Conversation, host: str = "127.0.0.1") -> ScriptedPeer:
    peer: ScriptedPeer | None = None

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert peer is not None
        try:
            await conversation(reader, writer)
        except Exception as error:  # the test asserts on it; the client sees the close
            peer.errors.append(error)
        finally:
            writer.close()

    server = await asyncio.start_server(serve, host, 0)
    peer = ScriptedPeer(server)
    return peer


def make_pool(
    limits: PoolLimits | None = None,
    *,
    mode: TlsMode = TlsMode.OPPORTUNISTIC,
    ca_file: Path | None = None,
    timeouts: SessionTimeouts = FAST,
    pipelining: bool = True,
) -> ConnectionPool:
    """A pool for one test site, saying EHLO relay.test."""
    options = SessionOptions(
        ehlo_name="relay.test",
        tls_mode=mode,
        timeouts=timeouts,
        tls_ca_file=ca_file,
        pipelining=pipelining,
    )
    return ConnectionPool(
        PoolKey("unspecified", "site.test"), limits or PoolLimits(idle_timeout=30.0), options
    )


def refused_port(host: str = "127.0.0.1") -> int:
    """A port on `host` with no listener: connecting to it is refused at once."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass(frozen=True)
class Certificates:
    ca_cert: Path
    signed_cert: Path
    signed_key: Path
    self_signed_cert: Path
    self_signed_key: Path

    def server_context(self, *, self_signed: bool) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        if self_signed:
            context.load_cert_chain(self.self_signed_cert, self.self_signed_key)
        else:
            context.load_cert_chain(self.signed_cert, self.signed_key)
        return context


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certificates(directory: Path, name: str = "mx.sink.test") -> Certificates:
    """A CA and a leaf for `name` it signed, and a self-signed leaf for `name`."""
    d = directory
    san = f"subjectAltName=DNS:{name}"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=relaystream test CA", "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"),
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
        "-keyout", str(d / "signed.key"), "-out", str(d / "signed.csr"),
    )  # fmt: skip
    (d / "signed.ext").write_text(f"{san}\nextendedKeyUsage=serverAuth\n")
    _openssl(
        "x509", "-req", "-in", str(d / "signed.csr"), "-CA", str(d / "ca.pem"),
        "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2",
        "-extfile", str(d / "signed.ext"), "-out", str(d / "signed.pem"),
    )  # fmt: skip
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
        "-addext", san, "-keyout", str(d / "self.key"), "-out", str(d / "self.pem"),
    )  # fmt: skip
    return Certificates(
        ca_cert=d / "ca.pem",
        signed_cert=d / "signed.pem",
        signed_key=d / "signed.key",
        self_signed_cert=d / "self.pem",
        self_signed_key=d / "self.key",
    )
