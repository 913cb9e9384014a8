"""One outbound SMTP session on aiosmtplib: connect, banner, EHLO, STARTTLS, transactions.

`SmtpSession.open` either returns a session that is ready for MAIL FROM or raises
`ConnectFailed`: a refused or timed-out connect, a banner other than 220 (421 included), a
failed EHLO, a required-but-missing STARTTLS or a failed handshake. All of those move delivery
to the next candidate address, so they share one exception.

The TCP connect is done here rather than in aiosmtplib so that connect and banner have their
own timeouts (60 s each by default) and so the socket can be bound to an egress address.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import aiosmtplib

from .tls import TlsMode, client_context

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
    """Seconds; `command` covers EHLO, STARTTLS, RSET, MAIL, RCPT and DATA."""

    connect: float = 60.0
    banner: float = 60.0
    command: float = 300.0


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

    def __init__(self, destination: Destination, reason: str) -> None:
        super().__init__(f"{destination}: {reason}")
        self.destination = destination
        self.reason = reason


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


def _reply_text(exc: aiosmtplib.SMTPResponseException) -> str:
    return f"{exc.code} {exc.message}"


class SmtpSession:
    """A ready session with one peer; not safe for concurrent use (the pool lends it out)."""

    def __init__(self, client: aiosmtplib.SMTP, destination: Destination, tls: bool) -> None:
        self._client = client
        self.destination = destination
        self.tls_active = tls
        self.transactions = 0

    @classmethod
    async def open(cls, destination: Destination, options: SessionOptions) -> SmtpSession:
        sock = await _connect_socket(destination, options)
        client = aiosmtplib.SMTP(
            sock=sock,
            local_hostname=options.ehlo_name,
            timeout=options.timeouts.banner,
            start_tls=False,
        )
        try:
            tls = await cls._handshake(client, destination, options)
        except BaseException:
            client.close()
            sock.close()  # aiosmtplib closes it only once it made a transport of it
            raise
        return cls(client, destination, tls)

    @staticmethod
    async def _handshake(
        client: aiosmtplib.SMTP, destination: Destination, options: SessionOptions
    ) -> bool:
        """Banner, EHLO and (per the TLS mode) STARTTLS; True when TLS is on."""
        try:
            await client.connect()
        except aiosmtplib.SMTPConnectResponseError as exc:
            raise ConnectFailed(destination, f"banner: {_reply_text(exc)}") from None
        except aiosmtplib.SMTPTimeoutError:
            raise ConnectFailed(destination, "timed out waiting for the banner") from None
        except aiosmtplib.SMTPException as exc:
            raise ConnectFailed(destination, f"banner: {exc}") from None
        client.timeout = options.timeouts.command
        await SmtpSession._ehlo(client, destination)
        mode = options.tls_mode
        offered = client.supports_extension("starttls")
        if not mode.wants_starttls(offered):
            return False
        if not offered:
            raise ConnectFailed(destination, f"TLS mode {mode} but STARTTLS is not offered")
        try:
            await client.starttls(
                server_hostname=destination.peer_name,
                tls_context=client_context(mode, options.tls_ca_file),
            )
        except aiosmtplib.SMTPResponseException as exc:
            raise ConnectFailed(destination, f"STARTTLS: {_reply_text(exc)}") from None
        except (aiosmtplib.SMTPException, ssl.SSLError, OSError) as exc:
            raise ConnectFailed(destination, f"TLS handshake failed: {exc}") from None
        # RFC 3207: what the peer said before TLS no longer counts; ask again.
        await SmtpSession._ehlo(client, destination)
        return True

    @staticmethod
    async def _ehlo(client: aiosmtplib.SMTP, destination: Destination) -> None:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPResponseException as exc:
            raise ConnectFailed(destination, f"EHLO: {_reply_text(exc)}") from None
        except aiosmtplib.SMTPException as exc:
            raise ConnectFailed(destination, f"EHLO: {exc}") from None

    @property
    def is_usable(self) -> bool:
        """False once the peer closed, a command timed out, or the peer said 421."""
        return self._client.is_connected

    async def reset(self) -> None:
        """RSET before a reused session's next transaction; StaleSession if that fails."""
        try:
            response = await self._client.execute_command(b"RSET")
        except aiosmtplib.SMTPException as exc:
            self._client.close()
            raise StaleSession(str(exc)) from None
        if response.code != 250:
            self._client.close()
            raise StaleSession(f"RSET: {response.code} {response.message}")

    async def send(self, sender: str, recipient: str, content: bytes) -> PeerReply:
        """One transaction; the reply that ended it (the DATA reply when all went well)."""
        if self.transactions > 0:
            await self.reset()
        self.transactions += 1
        smtputf8 = not (sender.isascii() and recipient.isascii())
        if smtputf8 and not self._client.supports_extension("smtputf8"):
            return PeerReply(
                553, "5.6.7 the peer does not support SMTPUTF8 for this address", "MAIL FROM"
            )
        encoding = "utf-8" if smtputf8 else "ascii"
        options: list[bytes] = [b"SMTPUTF8"] if smtputf8 else []
        if not content.isascii() and self._client.supports_extension("8bitmime"):
            options.append(b"BODY=8BITMIME")
        mail = f"MAIL FROM:<{sender}>"
        rcpt = f"RCPT TO:<{recipient}>"
        try:
            reply = await self._command(mail, b"MAIL", b"FROM:<" + sender.encode(encoding) + b">")
            if reply is None:
                reply = await self._command(
                    rcpt, b"RCPT", b"TO:<" + recipient.encode(encoding) + b">"
                )
            if reply is None:
                response = await self._client.data(content)
                return PeerReply(response.code, response.message, "DATA")
            return reply
        except aiosmtplib.SMTPResponseException as exc:
            return PeerReply(exc.code, exc.message, "DATA")
        except aiosmtplib.SMTPException as exc:
            self._client.close()
            return PeerReply(
                LOST_CONNECTION_CODE,
                f"4.4.2 {self.destination.peer_name} connection lost: {exc}",
                None,
            )

    async def _command(self, shown: str, verb: bytes, *args: bytes) -> PeerReply | None:
        """Run a MAIL or RCPT command: its reply if it refused, None when it said 2xx."""
        response = await self._client.execute_command(verb, *args)
        if 200 <= response.code < 300:
            return None
        return PeerReply(response.code, response.message, shown)

    async def close(self) -> None:
        """QUIT politely (briefly), then drop the connection whatever the peer does."""
        if self._client.is_connected:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await self._client.quit(timeout=QUIT_TIMEOUT_SECONDS)
        self._client.close()
