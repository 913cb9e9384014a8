"""One SMTP client connection on asyncio: writes commands, reads the peer's replies in order.

Replies are queued as they arrive, so several commands can be written at once and their
replies read one by one afterwards (PIPELINING, RFC 2920). aiosmtplib reads exactly one reply
per command written, so it cannot pipeline; the session (smtp_session.py) drives this instead.
What is said on the wire is smtp_wire.py's business; this module only moves bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections import deque

from .smtp_wire import MalformedReply, Reply, take_replies

# RFC 5321 3.8: a 421 reply means the server is closing the transmission channel.
CLOSING_CODE = 421
# A session pipelines at most four commands; more replies waiting than this were never asked
# for, and a peer sending them endlessly must not grow the queue without bound.
MAX_QUEUED_REPLIES = 32


class ConnectionLost(Exception):
    """No reply will come: the peer closed, sent garbage, or a reply timed out. Closed."""


class ReplyTimeout(ConnectionLost):
    """The peer did not answer in time."""


class _ReplyQueue(asyncio.Protocol):
    """The connection's protocol: buffers what the peer sends and queues its complete replies."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._replies: deque[Reply] = deque()
        self._arrived: asyncio.Event = asyncio.Event()
        self.lost: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        try:
            self._replies.extend(take_replies(self._buffer))
        except MalformedReply as error:
            self._give_up(f"malformed reply: {error}")
        if len(self._replies) > MAX_QUEUED_REPLIES:
            self._give_up(f"more than {MAX_QUEUED_REPLIES} replies nobody asked for")
        self._arrived.set()

    def _give_up(self, reason: str) -> None:
        self.lose(reason)
        self._replies.clear()
        if self.transport is not None:
            self.transport.close()

    def eof_received(self) -> bool:
        self.lose("the peer closed the connection")
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.lose(f"connection lost: {exc}" if exc else "connection closed")
        self._arrived.set()

    def lose(self, reason: str) -> None:
        if self.lost is None:
            self.lost = reason

    def discard_received(self) -> None:
        """Forget what arrived and was not read yet (RFC 3207: before the TLS handshake, so a
        man in the middle cannot queue replies that would be taken as the peer's under TLS)."""
        self._buffer.clear()
        self._replies.clear()

    async def next_reply(self) -> Reply:
        """The oldest reply not yet read; ConnectionLost when none can come any more."""
        while not self._replies:
            if self.lost is not None:
                raise ConnectionLost(self.lost)
            self._arrived.clear()
            await self._arrived.wait()
        return self._replies.popleft()


class SmtpConnection:
    """A connected socket speaking SMTP; not safe for concurrent use."""

    def __init__(self, protocol: _ReplyQueue, reply_timeout: float) -> None:
        self._protocol = protocol
        # Seconds to wait for each reply (and for the TLS handshake); the session sets it.
        self.reply_timeout = reply_timeout

    @classmethod
    async def over(cls, sock: socket.socket, reply_timeout: float) -> SmtpConnection:
        """Wrap a connected socket (the session connects it, with its own timeout)."""
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(_ReplyQueue, sock=sock)
        return cls(protocol, reply_timeout)

    @property
    def is_open(self) -> bool:
        transport = self._protocol.transport
        return self._protocol.lost is None and transport is not None and not transport.is_closing()

    def write(self, *chunks: bytes) -> None:
        """Queue bytes for the peer; ConnectionLost when the connection is already gone."""
        transport = self._protocol.transport
        if transport is None or not self.is_open:
            raise ConnectionLost(self._protocol.lost or "connection closed")
        transport.writelines(chunks)

    async def reply(self) -> Reply:
        """The next reply; the connection is closed on a 421, a timeout or a lost peer."""
        timeout = self.reply_timeout
        try:
            async with asyncio.timeout(timeout):
                reply = await self._protocol.next_reply()
        except TimeoutError:
            self.close()
            raise ReplyTimeout(f"no reply within {timeout:g} s") from None
        except ConnectionLost:
            self.close()
            raise
        if reply.code == CLOSING_CODE:
            self.close()
        return reply

    async def command(self, line: bytes) -> Reply:
        self.write(line)
        return await self.reply()

    async def start_tls(self, context: ssl.SSLContext, server_hostname: str) -> None:
        """Upgrade to TLS in place (after the peer's 220 to STARTTLS); raises on failure."""
        transport = self._protocol.transport
        if transport is None:
            raise ConnectionLost(self._protocol.lost or "connection closed")
        self._protocol.discard_received()
        loop = asyncio.get_running_loop()
        tls = await loop.start_tls(
            transport,
            self._protocol,
            context,
            server_hostname=server_hostname,
            ssl_handshake_timeout=self.reply_timeout,
        )
        if tls is None:
            raise ConnectionLost("the connection closed during the TLS handshake")
        self._protocol.transport = tls

    def local_address(self) -> str | None:
        """Our end of the connection as `ip:port` (`[ip]:port` for IPv6)."""
        transport = self._protocol.transport
        sockname = None if transport is None else transport.get_extra_info("sockname")
        if not isinstance(sockname, tuple) or len(sockname) < 2:
            return None
        host, port = sockname[0], sockname[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def ssl_object(self) -> ssl.SSLObject | None:
        """The TLS session after start_tls, None on a plain connection."""
        transport = self._protocol.transport
        found = None if transport is None else transport.get_extra_info("ssl_object")
        return found if isinstance(found, ssl.SSLObject) else None

    def close(self) -> None:
        transport = self._protocol.transport
        if transport is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing already
                transport.close()
        self._protocol.lose("closed by us")
