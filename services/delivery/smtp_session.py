"""One outbound SMTP session: connect, banner, EHLO, STARTTLS, transactions.

`SmtpSession.open` either returns a session that is ready for MAIL FROM or raises
`ConnectFailed`: a refused or timed-out connect, a banner other than 220 (421 included), a
failed EHLO, a required-but-missing STARTTLS or a failed handshake. All of those move delivery
to the next candidate address, so they share one exception.

A transaction is RSET (on a reused session only), MAIL, RCPT and DATA, then the content. When
the peer offers PIPELINING those four commands go out in one write and their replies are read
afterwards, as KumoMTA does (its `enable_pipelining`, on by default): one round trip instead of
four. RSET is left out of a session's first transaction because some peers count it as a junk
command.

Connect and banner have their own timeouts (60 s each by default) and the socket can be bound
to an egress address.

An egress path may ask for LMTP (`use_lmtp`: LHLO instead of EHLO; each message has one
recipient, so the one reply after the final dot is that recipient's, RFC 2033 4.2), a client
certificate (a prebuilt `tls_context`) and AUTH PLAIN after EHLO and STARTTLS (`PlainAuth`):
as in KumoMTA, credentials go only over TLS with a validated certificate unless the path
allows otherwise, and a refused AUTH fails the connection like a refused EHLO.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import socket
import ssl
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.domain.log_record import TlsDetails
from .smtp_client import ConnectionLost, ReplyTimeout, SmtpConnection
from .smtp_wire import Reply, command, data_payload, extensions
from .tls import TlsMode, client_context, tls_details

# Reply to a transaction the peer never answered (timeout, dropped connection): transient,
# as KumoMTA does, because the message may or may not have been accepted.
LOST_CONNECTION_CODE = 421
QUIT_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Destination:
    """One address to connect to; `peer_name` names it in logs and is the TLS SNI name."""

    peer_name: str
    address: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.peer_name} ({host}:{self.port})"


@dataclass(frozen=True)
class SessionTimeouts:
    """Seconds; `command` covers EHLO, STARTTLS, RSET, MAIL, RCPT, DATA and the final dot
    unless the command has its own (an egress path's `ehlo_timeout`, `mail_from_timeout`...)."""

    connect: float = 60.0
    banner: float = 60.0
    command: float = 300.0
    ehlo: float | None = None
    starttls: float | None = None
    rset: float | None = None
    mail_from: float | None = None
    rcpt_to: float | None = None
    data: float | None = None
    data_dot: float | None = None
    auth: float | None = None

    def of(self, name: str) -> float:
        """The reply timeout of command `name` (a field name above)."""
        own: float | None = getattr(self, name)
        return self.command if own is None else own


@dataclass(frozen=True)
class SessionOptions:
    """How sessions are opened: identity, TLS, timeouts, egress address."""

    ehlo_name: str
    tls_mode: TlsMode = TlsMode.OPPORTUNISTIC
    timeouts: SessionTimeouts = SessionTimeouts()
    # Extra trust roots for validating modes (a private smarthost's CA).
    tls_ca_file: Path | None = None
    # Local address to bind outbound sockets to (the egress source's address).
    source_address: str | None = None
    # Pipeline the envelope when the peer offers PIPELINING; off for a peer that breaks on it.
    pipelining: bool = True
    # LHLO instead of EHLO (the path's use_lmtp).
    lmtp: bool = False
    # STARTTLS context built once per egress path (it presents a client certificate); None:
    # a context for `tls_mode` and `tls_ca_file` per connection.
    tls_context: ssl.SSLContext | None = None
    # AUTH PLAIN after EHLO and STARTTLS (the path's smtp_auth_plain_*).
    auth: PlainAuth | None = None

    @property
    def greeting(self) -> bytes:
        return b"LHLO" if self.lmtp else b"EHLO"


@dataclass(frozen=True)
class PlainAuth:
    """AUTH PLAIN credentials and when they may be sent (KumoMTA's
    allow_smtp_auth_plain_without_tls / _without_valid_certificate, both off by default)."""

    username: str
    password: str = field(repr=False, default="")
    allow_without_tls: bool = False
    allow_without_valid_certificate: bool = False

    def initial_response(self) -> bytes:
        """RFC 4616: no authorization identity, then the user and the password."""
        return base64.b64encode(f"\0{self.username}\0{self.password}".encode())


@dataclass(frozen=True)
class SessionFacts:
    """What the log records of a session's transactions say about it (KumoMTA's session_id,
    source_address and tls_* fields)."""

    session_id: str
    source_address: str | None
    tls: TlsDetails | None


@dataclass(frozen=True)
class PeerReply:
    """A reply as the peer sent it (or as we synthesise it when the peer went away)."""

    code: int
    text: str
    command: str | None

    @property
    def is_success(self) -> bool:
        return 200 <= self.code < 300


class ConnectFailed(Exception):
    """The session could not be made ready; the next candidate address should be tried."""

    def __init__(self, destination: Destination, reason: str, *, tls: bool = False) -> None:
        super().__init__(f"{destination}: {reason}")
        self.destination = destination
        self.reason = reason
        # The TLS mode could not be honoured (no STARTTLS, refused, handshake failed).
        self.tls = tls


class StaleSession(Exception):
    """A reused session failed before a transaction began (RSET): safe to retry elsewhere."""


async def _connect_socket(destination: Destination, options: SessionOptions) -> socket.socket:
    family = (
        socket.AF_INET6
        if ipaddress.ip_address(destination.address).version == 6
        else socket.AF_INET
    )
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if options.source_address is not None:
            sock.bind((options.source_address, 0))
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(
            loop.sock_connect(sock, (destination.address, destination.port)),
            timeout=options.timeouts.connect,
        )
    except TimeoutError:
        sock.close()
        raise ConnectFailed(destination, "connect timed out") from None
    except OSError as exc:
        sock.close()
        raise ConnectFailed(destination, f"connect failed: {exc.strerror or exc}") from None
    except BaseException:
        sock.close()
        raise
    return sock


class SmtpSession:
    """A ready session with one peer; not safe for concurrent use (the pool lends it out)."""

    def __init__(
        self,
        connection: SmtpConnection,
        destination: Destination,
        tls: bool,
        offered: frozenset[str],
        pipelining: bool = True,
        timeouts: SessionTimeouts = SessionTimeouts(),
    ) -> None:
        self._connection = connection
        self._timeouts = timeouts
        self.destination = destination
        self.tls_active = tls
        self.pipelining = pipelining and "PIPELINING" in offered
        self._offered = offered
        self.transactions = 0
        session = connection.ssl_object()
        self.facts = SessionFacts(
            session_id=str(uuid.uuid4()),
            source_address=connection.local_address(),
            tls=None if session is None else tls_details(session),
        )

    @classmethod
    async def open(cls, destination: Destination, options: SessionOptions) -> SmtpSession:
        sock = await _connect_socket(destination, options)
        try:
            connection = await SmtpConnection.over(sock, options.timeouts.banner)
        except BaseException:
            sock.close()
            raise
        try:
            tls, offered = await cls._handshake(connection, destination, options)
        except BaseException:
            connection.close()
            raise
        return cls(connection, destination, tls, offered, options.pipelining, options.timeouts)

    @staticmethod
    async def _handshake(
        connection: SmtpConnection, destination: Destination, options: SessionOptions
    ) -> tuple[bool, frozenset[str]]:
        """Banner, EHLO, STARTTLS (per the TLS mode) and AUTH: whether TLS is on, what is
        offered."""
        try:
            banner = await connection.reply()
        except ReplyTimeout:
            raise ConnectFailed(destination, "timed out waiting for the banner") from None
        except ConnectionLost as lost:
            raise ConnectFailed(destination, f"banner: {lost}") from None
        if banner.code != 220:
            raise ConnectFailed(destination, f"banner: {banner}")
        timeouts = options.timeouts
        connection.reply_timeout = timeouts.of("ehlo")
        offered = await SmtpSession._ehlo(connection, destination, options)
        tls = await SmtpSession._starttls(connection, destination, options, offered)
        if tls:
            # RFC 3207: what the peer said before TLS no longer counts; ask again.
            connection.reply_timeout = timeouts.of("ehlo")
            offered = await SmtpSession._ehlo(connection, destination, options)
        if options.auth is not None:
            await SmtpSession._authenticate(connection, destination, options, options.auth, tls)
        return tls, offered

    @staticmethod
    async def _starttls(
        connection: SmtpConnection,
        destination: Destination,
        options: SessionOptions,
        offered: frozenset[str],
    ) -> bool:
        """STARTTLS and the handshake when the mode wants them: whether TLS is on now."""
        mode = options.tls_mode
        if not mode.wants_starttls("STARTTLS" in offered):
            return False
        if "STARTTLS" not in offered:
            raise ConnectFailed(
                destination, f"TLS mode {mode} but STARTTLS is not offered", tls=True
            )
        connection.reply_timeout = options.timeouts.of("starttls")
        try:
            reply = await connection.command(b"STARTTLS\r\n")
        except ConnectionLost as lost:
            raise ConnectFailed(destination, f"STARTTLS: {lost}", tls=True) from None
        if reply.code != 220:
            raise ConnectFailed(destination, f"STARTTLS: {reply}", tls=True)
        context = options.tls_context or client_context(mode, options.tls_ca_file)
        try:
            await connection.start_tls(context, destination.peer_name)
        except (ssl.SSLError, OSError, ConnectionLost) as exc:
            raise ConnectFailed(destination, f"TLS handshake failed: {exc}", tls=True) from None
        return True

    @staticmethod
    async def _authenticate(
        connection: SmtpConnection,
        destination: Destination,
        options: SessionOptions,
        auth: PlainAuth,
        tls: bool,
    ) -> None:
        """AUTH PLAIN, refused beforehand where the credentials could be read or captured
        (KumoMTA's rules); a reply other than 235 fails the connection."""
        if not tls and not auth.allow_without_tls:
            raise ConnectFailed(destination, "TLS is not enabled and AUTH PLAIN is required")
        validated = tls and options.tls_mode.validates_certificate
        if tls and not validated and not auth.allow_without_valid_certificate:
            raise ConnectFailed(
                destination,
                "TLS peer certificate was not validated and AUTH PLAIN requires a valid "
                "certificate",
            )
        connection.reply_timeout = options.timeouts.of("auth")
        try:
            reply = await connection.command(b"AUTH PLAIN " + auth.initial_response() + b"\r\n")
        except ConnectionLost as lost:
            raise ConnectFailed(destination, f"AUTH PLAIN as {auth.username}: {lost}") from None
        if reply.code != 235:
            raise ConnectFailed(destination, f"AUTH PLAIN as {auth.username}: {reply}")

    @staticmethod
    async def _ehlo(
        connection: SmtpConnection, destination: Destination, options: SessionOptions
    ) -> frozenset[str]:
        verb = options.greeting
        shown = verb.decode()
        try:
            reply = await connection.command(command(verb, options.ehlo_name.encode("ascii")))
        except ConnectionLost as lost:
            raise ConnectFailed(destination, f"{shown}: {lost}") from None
        if reply.code != 250:
            raise ConnectFailed(destination, f"{shown}: {reply}")
        return frozenset(extensions(reply))

    @property
    def is_usable(self) -> bool:
        """False once the peer closed, a command timed out, or the peer said 421."""
        return self._connection.is_open

    async def send(self, sender: str, recipient: str, content: bytes) -> PeerReply:
        """One transaction; the reply that ended it (the DATA reply when all went well).

        Raises StaleSession when a reused session fails its RSET: nothing was sent, so the
        message can go over another session.
        """
        smtputf8 = not (sender.isascii() and recipient.isascii())
        if smtputf8 and "SMTPUTF8" not in self._offered:
            return PeerReply(
                553, "5.6.7 the peer does not support SMTPUTF8 for this address", "MAIL FROM"
            )
        encoding = "utf-8" if smtputf8 else "ascii"
        parameters = b" SMTPUTF8" if smtputf8 else b""
        if not content.isascii() and "8BITMIME" in self._offered:
            parameters += b" BODY=8BITMIME"
        mail_shown = f"MAIL FROM:<{sender}>"
        rcpt_shown = f"RCPT TO:<{recipient}>"
        try:
            mail = command(b"MAIL", b"FROM:<" + sender.encode(encoding) + b">" + parameters)
            rcpt = command(b"RCPT", b"TO:<" + recipient.encode(encoding) + b">")
        except ValueError as invalid:
            return PeerReply(501, f"5.1.3 not sent: {invalid}", mail_shown)
        reset = self.transactions > 0
        self.transactions += 1
        try:
            if self.pipelining:
                refused = await self._pipelined_envelope(reset, mail, mail_shown, rcpt, rcpt_shown)
            else:
                refused = await self._envelope(reset, mail, mail_shown, rcpt, rcpt_shown)
            if refused is not None:
                return refused
            self._connection.write(*data_payload(content))
            reply = await self._reply("data_dot")
        except ConnectionLost as lost:
            self._connection.close()
            return PeerReply(
                LOST_CONNECTION_CODE,
                f"4.4.2 {self.destination.peer_name} connection lost: {lost}",
                None,
            )
        return PeerReply(reply.code, reply.text, "DATA")

    async def _envelope(
        self, reset: bool, mail: bytes, mail_shown: str, rcpt: bytes, rcpt_shown: str
    ) -> PeerReply | None:
        """RSET, MAIL, RCPT and DATA one at a time: the refusal, or None after the 354."""
        if reset:
            self._connection.reply_timeout = self._timeouts.of("rset")
            await self._reset(self._connection.command(b"RSET\r\n"))
        for line, shown, timeout in (
            (mail, mail_shown, "mail_from"),
            (rcpt, rcpt_shown, "rcpt_to"),
        ):
            self._connection.reply_timeout = self._timeouts.of(timeout)
            reply = await self._connection.command(line)
            if not 200 <= reply.code < 300:
                return PeerReply(reply.code, reply.text, shown)
        self._connection.reply_timeout = self._timeouts.of("data")
        reply = await self._connection.command(b"DATA\r\n")
        return None if reply.code == 354 else PeerReply(reply.code, reply.text, "DATA")

    async def _pipelined_envelope(
        self, reset: bool, mail: bytes, mail_shown: str, rcpt: bytes, rcpt_shown: str
    ) -> PeerReply | None:
        """The same commands in one write, then their replies (RFC 2920)."""
        try:
            self._connection.write(b"RSET\r\n" if reset else b"", mail, rcpt, b"DATA\r\n")
        except ConnectionLost as lost:
            if reset:  # nothing of this transaction reached the peer
                raise StaleSession(str(lost)) from None
            raise
        if reset:
            await self._reset(self._reply("rset"))
        mail_reply = await self._reply("mail_from")
        rcpt_reply = await self._reply("rcpt_to")
        data_reply = await self._reply("data")
        refused = None
        if not 200 <= mail_reply.code < 300:
            refused = PeerReply(mail_reply.code, mail_reply.text, mail_shown)
        elif not 200 <= rcpt_reply.code < 300:
            refused = PeerReply(rcpt_reply.code, rcpt_reply.text, rcpt_shown)
        if refused is None:
            if data_reply.code == 354:
                return None
            return PeerReply(data_reply.code, data_reply.text, "DATA")
        if data_reply.code == 354:
            # RFC 2920 3.1: DATA was accepted although the envelope was not; an empty message
            # ends it (the peer has no recipient to deliver it to).
            await self._connection.command(b".\r\n")
        return refused

    async def _reply(self, command_name: str) -> Reply:
        """The next reply, waited for as long as `command_name`'s timeout allows."""
        self._connection.reply_timeout = self._timeouts.of(command_name)
        return await self._connection.reply()

    async def _reset(self, reply: Coroutine[Any, Any, Reply]) -> None:
        """Await the RSET reply; StaleSession (the session closed) unless it was 250."""
        try:
            response = await reply
        except ConnectionLost as lost:
            raise StaleSession(str(lost)) from None
        if response.code != 250:
            self._connection.close()
            raise StaleSession(f"RSET: {response}")

    async def close(self) -> None:
        """QUIT politely (briefly), then drop the connection whatever the peer does."""
        if self._connection.is_open:
            self._connection.reply_timeout = QUIT_TIMEOUT_SECONDS
            with contextlib.suppress(ConnectionLost):
                await self._connection.command(b"QUIT\r\n")
        self._connection.close()
