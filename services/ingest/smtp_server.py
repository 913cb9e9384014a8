"""The ESMTP listener (aiosmtpd): relay control, limits, and 250 only once Kafka has the mail.

Replies (enhanced status codes per RFC 3463):
- 421 4.7.0 when `max_connections` sessions are open; the connection is then closed.
- MAIL: 501 5.1.7 for a malformed path, 553 5.1.7 for a sender mailbox the envelope parser
  refuses; 552 5.3.4 for a declared SIZE over the limit. RCPT: 501 5.1.3 / 553 5.1.3 likewise,
  550 5.7.1 unless the client is in a relay network, authenticated, or the policy's
  get_listener_domain allows it (relay_from for the sender's domain, relay_to for the
  recipient's: KumoMTA's check, `_relay_decision`), 452 4.5.3 past `max_recipients`.
- DATA: 552 5.3.4 over the size limit, 500 5.5.2 for a line over 1000 octets, 552 5.6.0 for
  a bare LF or CR unless `invalid_line_endings` allows or fixes it; otherwise one
  MessageAccepted per recipient goes to Kafka in one atomic write (acceptor.py) and the reply
  is 250 once Kafka acknowledged it, 451 4.3.0 if it did not (then none of them is visible).
  The data ends only at CRLF.CRLF (data_body.py).
- Any command: 501 5.5.2 for a NUL or other control character; a command line ending in a
  bare LF gets 550 5.5.2 and the session is closed (as Postfix does), unless
  `invalid_line_endings` allows or fixes it (then it is read as if it ended in CRLF).
- AUTH PLAIN/LOGIN only over TLS, or from a loopback client; 535 5.7.8 for bad credentials.
- A session that had MAX_REFUSED_RECIPIENTS recipients refused gets 421 4.7.0 at its next
  RCPT, and one that failed MAX_AUTH_FAILURES AUTH attempts at its next AUTH; the session
  is then closed (Postfix's smtpd_hard_error_limit): a client cannot keep the policy thread
  busy with one refused command after another.
- The policy's SMTP-time events run during the dialogue (reception.py), as in KumoMTA:
  smtp_server_connection_accepted before the banner, smtp_server_ehlo at EHLO/HELO,
  smtp_server_mail_from at MAIL, get_listener_domain (relaying) and smtp_server_rcpt_to at
  RCPT,
  smtp_server_auth_plain for a user the users file does not know, and
  smtp_server_message_received on each message before the reply to DATA. `kumo.reject(code,
  text)` in any of them is the reply to that command (421 also closes the session); refusing
  one message of a transaction refuses the transaction, and nothing of it is accepted. A
  policy failure (error, budget, deadline) answers `451 4.3.0 technical difficulties` (421
  at connection, 454 4.7.0 at AUTH): nothing is accepted and the client retries.

aiosmtpd words some of its own replies without enhanced codes; `IngestSMTP.push` rewrites those
few (the table below), the rest of the protocol engine is aiosmtpd's. It reads each command
line up to a LF and takes any byte in it; `CommandLineReader` checks each line as it is read.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import logging
import ssl
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, AnyStr, cast

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session

from ..core.domain.envelope import EnvelopeAddress, EnvelopeAddressError
from ..core.domain.listener_domain import ListenerDomain, RelayDecision, relay_decision
from ..core.policy import (
    SMTP_AUTH_PLAIN,
    SMTP_CONNECTION_ACCEPTED,
    SMTP_EHLO,
    SMTP_MAIL_FROM,
    SMTP_RCPT_TO,
    ConnectionMeta,
    EventResult,
    EventReturned,
    PolicyFailed,
    PolicyRejected,
    ReceptionProtocol,
)
from ..core.policy.types import POLICY_FAILURE_CODE, POLICY_FAILURE_TEXT
from ..core.runtime.settings import InvalidLineEndings, Network
from . import metrics
from .accepted_messages import Reception, accepted_messages
from .acceptor import AcceptanceFailed, AtomicAcceptor
from .data_body import END, DataBody, DataVerdict
from .message_ids import new_message_id
from .received_header import TraceFacts, received_header
from .reception import ReceptionPolicy, Refused, first_refusal
from .smtp_lines import INVALID_DATA_LINE_ENDINGS_REPLY, CommandRefusal, command_refusal
from .smtp_users import SmtpUsers

log = logging.getLogger(__name__)

PROTOCOL: ReceptionProtocol = "ESMTP"
NULL_PATH = "<>"
POLICY_FAILURE_REPLY = f"{POLICY_FAILURE_CODE} {POLICY_FAILURE_TEXT}"
# A failing smtp_server_connection_accepted: KumoMTA's answer to a session that fails.
CONNECTION_FAILURE_REPLY = f"421 {POLICY_FAILURE_TEXT}"
RELAYING_DENIED_REPLY = "550 5.7.1 relaying denied"
# KumoMTA keeps this many listener domains per session, so a client trying many domains
# cannot grow it.
LISTENER_DOMAINS_PER_SESSION = 16
# Refusals a session may have before it is closed (see the module doc): Postfix's
# smtpd_hard_error_limit, 20 errors (KumoMTA has no such limit). Not fewer AUTH failures:
# smtplib and aiosmtplib try every mechanism offered before they give up on a password.
MAX_REFUSED_RECIPIENTS = 20
MAX_AUTH_FAILURES = 20
# Recipient domains whose report logging (log_oob/log_arf) was warned about, per process.
REPORT_WARNINGS_KEPT = 1024
# RFC 4954: a temporary failure of the authentication mechanism.
AUTH_FAILURE_REPLY = "454 4.7.0 Temporary authentication failure"
AUTH_INVALID_REPLY = "535 5.7.8 Authentication credentials invalid"

# aiosmtpd's own replies (by prefix) and what we answer instead.
_REWORDED = (
    ("552 Error: message size exceeds", "552 5.3.4 Message size exceeds fixed maximum size"),
    ("552 Error: Too much mail data", "552 5.3.4 Message size exceeds fixed maximum size"),
    ("500 Line too long", "500 5.5.2 Line too long (at most 1000 octets with CRLF)"),
    ("500 Command line too long", "500 5.5.2 Command line too long"),
    ("501 Syntax: MAIL FROM", "501 5.1.7 Syntax: MAIL FROM:<address> [parameters]"),
    ("501 Syntax: RCPT TO", "501 5.1.3 Syntax: RCPT TO:<address> [parameters]"),
)


_DATA_REFUSALS = {
    DataVerdict.TOO_MUCH: "552 Error: Too much mail data",
    DataVerdict.LINE_TOO_LONG: "500 Line too long",
    DataVerdict.INVALID_LINE_ENDINGS: INVALID_DATA_LINE_ENDINGS_REPLY,
}


@dataclass(frozen=True)
class SmtpPolicy:
    """What the listener accepts; built from IngestSettings by the service."""

    hostname: str
    relay_networks: Sequence[Network]
    max_message_size: int
    max_recipients: int
    max_connections: int
    command_timeout: float
    users: SmtpUsers
    tls_context: ssl.SSLContext | None = None
    invalid_line_endings: InvalidLineEndings = InvalidLineEndings.DENY


def _peer_ip(peer: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    host = str(peer[0]).split("%", 1)[0]  # drop an IPv6 zone
    ip = ipaddress.ip_address(host)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _host_port(address: Any) -> str:
    host, port = str(address[0]), int(address[1])
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _closing_bracket(text: str) -> int | None:
    """Index of the `>` that ends the path starting at text[0] == '<' (quotes respected)."""
    quoted = escaped = False
    for index, char in enumerate(text[1:], start=1):
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ">" and not quoted:
            return index
    return None


def split_path(arg: str) -> tuple[str, str] | None:
    """`<path> params` -> (mailbox text or "<>", params); None if not a bracketed path.

    A source route (`<@a,@b:user@c>`) is dropped, as RFC 5321 section 4.1.1.3 asks.
    """
    text = arg.strip()
    if not text.startswith("<"):
        return None
    end = _closing_bracket(text)
    if end is None:
        return None
    inner, rest = text[1:end], text[end + 1 :]
    if rest and not rest.startswith(" "):
        return None
    if not inner:
        return NULL_PATH, rest.strip()
    if inner.startswith("@"):
        _, colon, mailbox = inner.partition(":")
        if not colon or not mailbox:
            return None
        inner = mailbox
    return inner, rest.strip()


class SessionLimit:
    """Counts open sessions of one listener."""

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.open = 0

    def try_enter(self) -> bool:
        if self.open >= self.maximum:
            return False
        self.open += 1
        metrics.SMTP_SESSIONS.inc()
        return True

    def leave(self) -> None:
        self.open -= 1
        metrics.SMTP_SESSIONS.dec()


class CommandLineRefused(Exception):
    """Raised by CommandLineReader; IngestSMTP.handle_exception answers it."""

    def __init__(self, refusal: CommandRefusal) -> None:
        super().__init__(refusal.reply)
        self.refusal = refusal


class CommandLineReader(asyncio.StreamReader):
    """The session's stream, checking each command line as aiosmtpd reads it.

    aiosmtpd reads command lines (and AUTH responses, through readline) with `readuntil()`,
    whose separator is LF, and DATA through IngestSMTP with `.CRLF`; only the former are
    commands. A refused line raises CommandLineRefused, which aiosmtpd's command loop hands
    to handle_exception, so the line is answered instead of parsed.
    """

    def __init__(self, *, limit: int, forbid_bare_lf: bool) -> None:
        super().__init__(limit=limit)
        self._forbid_bare_lf = forbid_bare_lf

    async def readuntil(self, separator: Any = b"\n") -> bytes:  # typeshed: a private type
        line = await super().readuntil(separator)
        if separator == b"\n":
            refusal = command_refusal(line, forbid_bare_lf=self._forbid_bare_lf)
            if refusal is not None:
                raise CommandLineRefused(refusal)
        return line


class IngestSMTP(SMTP):
    """aiosmtpd's protocol with our session limit, strict paths and enhanced-code replies."""

    def __init__(self, handler: IngestHandler, listener: SmtpListener) -> None:
        policy = handler.policy
        super().__init__(
            handler,
            data_size_limit=policy.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=policy.hostname,
            ident="relaystream ESMTP",
            tls_context=policy.tls_context,
            timeout=policy.command_timeout,
            auth_require_tls=True,
            authenticator=handler.refuse_other_mechanisms,
        )
        # aiosmtpd creates its stream reader inside __init__ and takes no other; the stream
        # protocol is set up again around ours, before any connection exists.
        reader = CommandLineReader(
            limit=self.line_length_limit,
            forbid_bare_lf=policy.invalid_line_endings is InvalidLineEndings.DENY,
        )
        asyncio.StreamReaderProtocol.__init__(
            self, reader, client_connected_cb=self._cb_client_connected, loop=self.loop
        )
        self._listener = listener
        self._handler = handler
        self._invalid_line_endings = policy.invalid_line_endings
        self._close_after_reply = False
        self.local_address = ""
        # KumoMTA's connection metadata: the policy's conn_meta for this session.
        self.connection: ConnectionMeta = {}
        # get_listener_domain's answers in this session, by domain (as KumoMTA keeps them),
        # refusals and failures too, so that a client repeating a domain does not ask the
        # policy again; forgotten when the client authenticates (a handler may read authz_id).
        self.listener_domains: dict[str, ListenerDomain | PolicyRejected | PolicyFailed | None] = {}
        # Counted against MAX_REFUSED_RECIPIENTS and MAX_AUTH_FAILURES.
        self.refused_recipients = 0
        self.auth_failures = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None
        super().connection_made(transport)
        if first:
            self.local_address = _host_port(transport.get_extra_info("sockname"))
            # Credentials may travel in clear only where they never leave the host.
            peer = transport.get_extra_info("peername")
            self._auth_require_tls = not _peer_ip(peer).is_loopback
            self.connection.update(
                {
                    "reception_protocol": PROTOCOL,
                    "received_from": _host_port(peer),
                    "received_via": self.local_address,
                    "hostname": self._handler.policy.hostname,
                }
            )

    async def _handle_client(self) -> None:
        if not self._listener.sessions.try_enter():
            metrics.SMTP_CONNECTIONS.labels("refused_full").inc()
            with contextlib.suppress(ConnectionError):
                await self.push("421 4.7.0 Too many connections, try again later")
            if self.transport is not None:
                self.transport.close()
            return
        metrics.SMTP_CONNECTIONS.labels("served").inc()
        self._listener.protocols.add(self)
        try:
            result = await self._handler.reception.event(
                SMTP_CONNECTION_ACCEPTED, [], self.connection
            )
            refusal = self.policy_reply(result, "connection", CONNECTION_FAILURE_REPLY)
            if refusal is not None:
                self._close_after_reply = True
                with contextlib.suppress(ConnectionError):
                    await self.push(refusal)
                if self.transport is not None:
                    self.transport.close()
                return
            await super()._handle_client()
        finally:
            self._listener.protocols.discard(self)
            self._listener.sessions.leave()

    def policy_reply(self, result: EventResult, stage: str, failure_reply: str) -> str | None:
        """The reply to a command whose policy event refused it (None: go on). A 421 from
        kumo.reject closes the session after the reply, as in KumoMTA."""
        if isinstance(result, EventReturned):
            return None
        peer = self.connection.get("received_from", "")
        if isinstance(result, PolicyFailed):
            metrics.MESSAGES_REJECTED.labels(PROTOCOL, "policy_failed").inc()
            log.warning(
                "SMTP policy event failed: answered with a transient error",
                extra={
                    "stage": stage,
                    "peer": peer,
                    "reason": result.reason,
                    "error": result.message,
                },
            )
            return failure_reply
        metrics.MESSAGES_REJECTED.labels(PROTOCOL, "policy_rejected").inc()
        log.info(
            "SMTP command refused by the policy",
            extra={"stage": stage, "peer": peer, "response": result.response},
        )
        if result.code == 421:
            self._close_after_reply = True
        return result.response

    async def listener_domain(
        self, domain: str
    ) -> ListenerDomain | PolicyRejected | PolicyFailed | None:
        """The policy's listener domain for `domain` on this listener, asked once per session."""
        if domain in self.listener_domains:
            return self.listener_domains[domain]
        result = await self._handler.reception.listener_domain(
            domain, self.local_address, self.connection
        )
        while len(self.listener_domains) >= LISTENER_DOMAINS_PER_SESSION:
            del self.listener_domains[next(iter(self.listener_domains))]
        self.listener_domains[domain] = result
        return result

    def close_after_reply(self) -> None:
        self._close_after_reply = True

    def too_many(self, what: str) -> str:
        """The 421 that ends a session past one of its refusal limits."""
        log.info(
            "SMTP session closed: too many refusals",
            extra={"peer": self.connection.get("received_from", ""), "refused": what},
        )
        self._close_after_reply = True
        return f"421 4.7.0 {self._handler.policy.hostname} too many {what}, closing the session"

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str):
            for prefix, replacement in _REWORDED:
                if status.startswith(prefix):
                    status = replacement
                    break
        await super().push(status)
        if self._close_after_reply and self.transport is not None:
            self.transport.close()  # after the reply is written; unsent bytes are flushed

    async def handle_exception(self, error: Exception) -> str:
        if not isinstance(error, CommandLineRefused):
            return await super().handle_exception(error)
        if error.refusal.closes_session:
            log.info(
                "SMTP session closed: bare LF in a command",
                extra={"peer": _host_port(self.session.peer) if self.session else ""},
            )
            self._close_after_reply = True
        return error.refusal.reply

    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA, reading the body in chunks (see data_body.py), same replies."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        body = DataBody(
            self.data_size_limit or 0, self.line_length_limit, self._invalid_line_endings
        )
        try:
            while not body.feed(await self._read_to_next_dot_line()):
                pass
        except asyncio.CancelledError:
            log.info("connection lost during DATA")
            self._writer.close()
            raise
        verdict = body.verdict()
        if verdict is not DataVerdict.ACCEPTABLE:
            # aiosmtpd's wording, which push() turns into the enhanced replies; KumoMTA's for
            # line endings.
            if verdict is DataVerdict.INVALID_LINE_ENDINGS:
                metrics.MESSAGES_REJECTED.labels(PROTOCOL, "invalid_line_endings").inc()
            await self.push(_DATA_REFUSALS[verdict])
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        content = body.content()
        self.envelope.content = content
        self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)

    async def _read_to_next_dot_line(self) -> bytes:
        """Bytes up to and including the next `.CRLF` (the end can only be at one), or as many
        as the reader's line limit holds; never past it, so pipelined commands stay unread."""
        try:
            return await self._reader.readuntil(END)
        except asyncio.LimitOverrunError as overrun:
            return await self._reader.readexactly(overrun.consumed)

    # AUTH: aiosmtpd's PLAIN and LOGIN exchanges, with an asynchronous check of the
    # credentials (the policy's smtp_server_auth_plain runs on the policy thread) and PLAIN's
    # authorization identity kept (aiosmtpd drops it).
    async def auth_PLAIN(self, _: object, args: list[str]) -> AuthResult:
        if len(args) == 1:
            response = await self.challenge_auth("")
            if response is MISSING:
                return AuthResult(success=False)
            assert isinstance(response, bytes)
        else:
            try:
                response = base64.b64decode(args[1].encode(), validate=True)
            except ValueError:
                await self.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        parts = response.split(b"\x00")
        if len(parts) != 3:
            await self.push("501 5.5.2 Can't split auth value")
            return AuthResult(success=False, handled=True)
        authz, login, password = parts
        return await self._handler.authenticate(self, authz or login, login, password)

    async def auth_LOGIN(self, _: object, args: list[str]) -> AuthResult:
        if len(args) == 1:
            login = await self.challenge_auth(self.AuthLoginUsernameChallenge)
            if login is MISSING:
                return AuthResult(success=False)
        else:
            try:
                login = base64.b64decode(args[1].encode(), validate=True)
            except ValueError:
                await self.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        password = await self.challenge_auth(self.AuthLoginPasswordChallenge)
        if password is MISSING:
            return AuthResult(success=False)
        assert isinstance(login, bytes) and isinstance(password, bytes)
        return await self._handler.authenticate(self, login, login, password)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd parses paths with the lenient RFC 5322 header parser (it turns `<a b@c>`
        # into `"a b"@c`); we take the bracketed text as written and let the envelope parser
        # judge it. "" makes aiosmtpd answer its 501 syntax reply.
        split = split_path(arg)
        return ("", "") if split is None else split

    @property
    def tls_facts(self) -> dict[str, str]:
        ssl_object = self.transport.get_extra_info("ssl_object") if self.transport else None
        if ssl_object is None:
            return {}
        cipher = ssl_object.cipher()
        return {
            "tls_protocol_version": str(ssl_object.version()),
            "tls_cipher": str(cipher[0]) if cipher else "",
        }


class IngestHandler:
    """The aiosmtpd hooks: validation and relay control, then the atomic write to Kafka."""

    def __init__(
        self, policy: SmtpPolicy, acceptor: AtomicAcceptor, reception: ReceptionPolicy
    ) -> None:
        self.policy = policy
        self.reception = reception
        self._acceptor = acceptor
        self.in_flight = 0
        self._report_domains_warned: set[str] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def refuse_other_mechanisms(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        """aiosmtpd's synchronous authenticator: PLAIN and LOGIN are IngestSMTP's own
        (asynchronous, `authenticate`), so anything reaching this fails."""
        metrics.MESSAGES_REJECTED.labels(PROTOCOL, "auth_failed").inc()
        return AuthResult(success=False, handled=False)

    @property
    def offers_auth(self) -> bool:
        return bool(self.policy.users) or self.reception.has_handler(SMTP_AUTH_PLAIN)

    async def authenticate(
        self, server: IngestSMTP, authz: bytes, login: bytes, password: bytes
    ) -> AuthResult:
        """A user of the users file is checked there; anyone else by the policy's
        smtp_server_auth_plain (authz, authc, password, conn_meta), whose true (or AuthInfo
        table) authenticates, as in KumoMTA. authn_id and authz_id go into conn_meta."""
        if server.auth_failures >= MAX_AUTH_FAILURES:
            reply = server.too_many("failed authentications")
            return AuthResult(success=False, handled=False, message=reply)
        name = login.decode("utf-8", "replace")
        identity = authz.decode("utf-8", "replace")
        secret = password.decode("utf-8", "replace")
        if name in self.policy.users.hashes or not self.reception.has_handler(SMTP_AUTH_PLAIN):
            # A users-file login acts only as itself: an authorization identity naming someone
            # else would let it claim that identity's tenant (require_authz) or relay_from_authz
            # (RFC 4616: the server decides whether authc may act as authz; here it may not).
            success = identity in ("", name) and self.policy.users.authenticate(name, secret)
            identity = name
        else:
            result = await self.reception.event(
                SMTP_AUTH_PLAIN, [identity, name, secret], server.connection
            )
            refusal = server.policy_reply(result, "auth", AUTH_FAILURE_REPLY)
            if refusal is not None:
                server.auth_failures += 1
                return AuthResult(success=False, handled=False, message=refusal)
            assert isinstance(result, EventReturned)
            success = result.value is True or isinstance(result.value, dict)
        if not success:
            server.auth_failures += 1
            metrics.MESSAGES_REJECTED.labels(PROTOCOL, "auth_failed").inc()
            return AuthResult(success=False, handled=False, message=AUTH_INVALID_REPLY)
        server.connection["authn_id"] = name
        server.connection["authz_id"] = identity
        server.listener_domains.clear()
        return AuthResult(success=True, auth_data=LoginPassword(login, password))

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        if not self.offers_auth:
            # No users: advertising AUTH would only invite failing attempts.
            responses = [line for line in responses if not line.startswith("250-AUTH")]
        # aiosmtpd answers pipelined commands in order (and the DATA reader keeps what follows
        # the dot) but does not say so; clients pipeline only when it is offered (RFC 2920).
        responses = [*responses[:-1], "250-PIPELINING", responses[-1]]
        extensions = [line[4:] for line in responses[1:]]
        ingest = cast(IngestSMTP, server)
        result = await self.reception.event(SMTP_EHLO, [hostname, extensions], ingest.connection)
        refusal = ingest.policy_reply(result, "EHLO", POLICY_FAILURE_REPLY)
        if refusal is not None:
            return [refusal]
        session.host_name = hostname
        ingest.connection["ehlo_domain"] = hostname
        # KumoMTA: a returned list replaces the advertised extensions (and changes nothing
        # of what the server does).
        assert isinstance(result, EventReturned)
        value = result.value
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            lines = [responses[0][4:], *(str(item) for item in value)]
            return [*(f"250-{line}" for line in lines[:-1]), f"250 {lines[-1]}"]
        return responses

    async def handle_HELO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str
    ) -> str:
        ingest = cast(IngestSMTP, server)
        result = await self.reception.event(SMTP_EHLO, [hostname], ingest.connection)
        refusal = ingest.policy_reply(result, "HELO", POLICY_FAILURE_REPLY)
        if refusal is not None:
            return refusal
        session.host_name = hostname
        ingest.connection["ehlo_domain"] = hostname
        return f"250 {self.policy.hostname}"

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address != NULL_PATH:
            try:
                address = str(EnvelopeAddress.parse(address))
            except EnvelopeAddressError as error:
                metrics.MESSAGES_REJECTED.labels(PROTOCOL, "bad_sender").inc()
                return f"553 5.1.7 Bad sender address: {error}"
        ingest = cast(IngestSMTP, server)
        sender = "" if address == NULL_PATH else address
        result = await self.reception.event(SMTP_MAIL_FROM, [sender], ingest.connection)
        refusal = ingest.policy_reply(result, "MAIL", POLICY_FAILURE_REPLY)
        if refusal is not None:
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        ingest = cast(IngestSMTP, server)
        if ingest.refused_recipients >= MAX_REFUSED_RECIPIENTS:
            return ingest.too_many("refused recipients")
        reply = await self._rcpt_reply(ingest, session, envelope, address, options)
        if not reply.startswith("250"):
            ingest.refused_recipients += 1
        return reply

    async def _rcpt_reply(
        self,
        ingest: IngestSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str:
        if address == NULL_PATH:
            metrics.MESSAGES_REJECTED.labels(PROTOCOL, "bad_recipient").inc()
            return "501 5.1.3 The null path is not a recipient"
        try:
            recipient = str(EnvelopeAddress.parse(address))
        except EnvelopeAddressError as error:
            metrics.MESSAGES_REJECTED.labels(PROTOCOL, "bad_recipient").inc()
            return f"553 5.1.3 Bad recipient address: {error}"
        # Before the relay decision: that may ask the policy, which a client must not be able
        # to keep busy past the recipients it may give.
        if len(envelope.rcpt_tos) >= self.policy.max_recipients:
            metrics.MESSAGES_REJECTED.labels(PROTOCOL, "too_many_recipients").inc()
            return "452 4.5.3 Too many recipients"
        decision = await self._relay_decision(ingest, session, envelope, recipient)
        if isinstance(decision, str):
            return decision
        if not decision.relays:
            metrics.MESSAGES_REJECTED.labels(PROTOCOL, "relaying_denied").inc()
            return RELAYING_DENIED_REPLY
        result = await self.reception.event(SMTP_RCPT_TO, [recipient], ingest.connection)
        refusal = ingest.policy_reply(result, "RCPT", POLICY_FAILURE_REPLY)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(recipient)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def _relay_decision(
        self, server: IngestSMTP, session: Session, envelope: Envelope, recipient: str
    ) -> RelayDecision | str:
        """KumoMTA's check at RCPT: relay networks or SMTP AUTH, then the listener domain of
        the sender's domain (relay_from), then the recipient's (relay_to). A listener domain
        the policy refuses or fails to give is the reply (a str)."""
        domains: list[ListenerDomain | None] = []
        sender = envelope.mail_from
        # The null sender has no domain to ask about.
        sender_domain = "" if sender in (None, NULL_PATH) else str(sender).rpartition("@")[2]
        for domain in (sender_domain, recipient.rpartition("@")[2]):
            result = await server.listener_domain(domain) if domain else None
            if isinstance(result, PolicyRejected | PolicyFailed):
                refusal = server.policy_reply(result, "RCPT", POLICY_FAILURE_REPLY)
                assert refusal is not None
                return refusal
            domains.append(result)
        decision = relay_decision(
            _peer_ip(session.peer),
            relay_hosts=session.authenticated or self._in_relay_networks(session.peer),
            sender_domain=domains[0],
            recipient_domain=domains[1],
        )
        if decision.reports_asked:
            self._warn_reports_unlogged(recipient.rpartition("@")[2], decision)
        return decision

    def _warn_reports_unlogged(self, domain: str, decision: RelayDecision) -> None:
        """Once per domain: relaystream does not turn OOB/ARF reports into log records."""
        if domain in self._report_domains_warned:
            return
        if len(self._report_domains_warned) >= REPORT_WARNINGS_KEPT:
            self._report_domains_warned.clear()
        self._report_domains_warned.add(domain)
        log.warning(
            "get_listener_domain asks for OOB/ARF reports to be logged (log_oob/log_arf); "
            "relaystream does not parse reports: mail to this domain is accepted only where "
            "relaying is allowed, then logged as an ordinary Reception and relayed, never "
            "dropped",
            extra={"domain": domain, "relays": decision.relays},
        )

    def _in_relay_networks(self, peer: Any) -> bool:
        ip = _peer_ip(peer)
        return any(ip.version == net.version and ip in net for net in self.policy.relay_networks)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.in_flight += 1
        self._idle.clear()
        try:
            return await self._accept(cast(IngestSMTP, server), session, envelope)
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()

    async def wait_idle(self) -> None:
        """Until no DATA is being handed to Kafka."""
        await self._idle.wait()

    async def _accept(self, server: IngestSMTP, session: Session, envelope: Envelope) -> str:
        recipients = list(envelope.rcpt_tos)
        received_at = datetime.now(UTC)
        transaction_id = uuid.uuid4().hex
        authn_id = session.login_data.decode("utf-8", "replace") if session.authenticated else None
        tls_facts = server.tls_facts
        trace = TraceFacts(
            ehlo_domain=session.host_name or "",
            peer_ip=str(_peer_ip(session.peer)),
            hostname=self.policy.hostname,
            tls=bool(tls_facts),
            authenticated=authn_id is not None,
            transaction_id=transaction_id,
            received_at=received_at,
        )
        raw = envelope.original_content
        content = received_header(trace, recipients) + (raw if isinstance(raw, bytes) else b"")
        # KumoMTA copies the connection metadata into each message's meta.
        connection = server.connection
        connection["ehlo_domain"] = session.host_name or ""
        connection.update(tls_facts)
        meta: dict[str, Any] = dict(connection)
        if authn_id is not None:
            meta["authn_id"] = authn_id
        sender = "" if envelope.mail_from == NULL_PATH else str(envelope.mail_from)
        reception = Reception(
            protocol=PROTOCOL,
            sender=sender,
            content=content,
            received_at=received_at,
            transaction_id=transaction_id,
            meta=meta,
        )
        events = accepted_messages(reception, recipients, [new_message_id() for _ in recipients])
        results = await self.reception.receive(PROTOCOL, events, connection, stop_at_refusal=True)
        refused = first_refusal(results)
        if refused is not None:
            # KumoMTA: refusing one message refuses the transaction; nothing is accepted.
            failure = refused.failure is not None
            metrics.MESSAGES_REJECTED.labels(
                PROTOCOL, "policy_failed" if failure else "policy_rejected"
            ).inc(len(recipients))
            log.log(
                logging.WARNING if failure else logging.INFO,
                "SMTP transaction refused by the policy at DATA",
                extra={
                    "transaction_id": transaction_id,
                    "recipient": refused.recipient,
                    "response": refused.reply,
                    "error": refused.failure,
                },
            )
            if refused.response.code == 421:
                server.close_after_reply()
            return refused.reply
        events = [result for result in results if not isinstance(result, Refused)]
        if server.transport is None or server.transport.is_closing():
            # The client is gone (it gave up waiting): a 250 could not reach it and it would
            # send the message again, so nothing is accepted.
            return "451 4.4.2 connection lost before the message was accepted"
        try:
            await self._acceptor.accept(events)
        except AcceptanceFailed as error:
            metrics.MESSAGES_REJECTED.labels(PROTOCOL, "kafka_unavailable").inc(len(recipients))
            log.warning(
                "SMTP transaction not accepted: Kafka did not commit",
                extra={"transaction_id": transaction_id, "error": str(error)},
            )
            return "451 4.3.0 Temporary failure storing the message, try again later"
        metrics.note_received(PROTOCOL, len(recipients))
        ids = ",".join(event["id"] for event in events)
        return f"250 2.0.0 OK queued as {transaction_id} ids={ids}"


class SmtpListener:
    """The listening socket and its sessions."""

    def __init__(
        self, policy: SmtpPolicy, acceptor: AtomicAcceptor, reception: ReceptionPolicy
    ) -> None:
        self.handler = IngestHandler(policy, acceptor, reception)
        self.sessions = SessionLimit(policy.max_connections)
        self.protocols: set[IngestSMTP] = set()
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: IngestSMTP(self.handler, self), host=host, port=port
        )
        log.info("SMTP listening", extra={"host": host, "port": self.port})

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the SMTP listener is not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self, grace: float) -> None:
        """Stop listening, let transactions in DATA finish (up to `grace` s), close the rest."""
        if self._server is None:
            return
        self._server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.handler.wait_idle(), grace)
        for protocol in list(self.protocols):
            if protocol.transport is not None:
                protocol.transport.close()
        await self._server.wait_closed()
        self._server = None
