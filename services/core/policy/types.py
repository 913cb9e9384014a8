"""The data a policy reads and returns: messages in, results out, and the limits it runs under."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

JsonValue: TypeAlias = str | int | float | bool | list["JsonValue"] | dict[str, "JsonValue"] | None

ReceptionProtocol: TypeAlias = Literal["ESMTP", "HTTP", "Kafka"]

# The SMTP-time events ingest runs during the dialogue, before the message handler (KumoMTA's
# names; each gets conn_meta).
SMTP_CONNECTION_ACCEPTED = "smtp_server_connection_accepted"
SMTP_EHLO = "smtp_server_ehlo"
SMTP_MAIL_FROM = "smtp_server_mail_from"
SMTP_RCPT_TO = "smtp_server_rcpt_to"
SMTP_AUTH_PLAIN = "smtp_server_auth_plain"
# Asked at RCPT TO about the sender's and the recipient's domain (relaying).
GET_LISTENER_DOMAIN = "get_listener_domain"
SMTP_SESSION_EVENTS = frozenset(
    {SMTP_CONNECTION_ACCEPTED, SMTP_EHLO, SMTP_MAIL_FROM, SMTP_RCPT_TO, SMTP_AUTH_PLAIN}
)

# KumoMTA's connection metadata: one SMTP session's values (received_from, received_via,
# hostname, authn_id, ... and what the policy's conn_meta:set_meta adds), as JSON values.
# The policy changes it in place.
ConnectionMeta: TypeAlias = dict[str, JsonValue]

# Event handler run for each reception protocol. KumoMTA has no Kafka reception: a message
# published upstream onto Kafka is an API injection like an HTTP one, so it gets the
# `http_message_generated` handler (without KumoMTA's auth_info argument).
HANDLER_FOR_PROTOCOL: Mapping[str, str] = {
    "ESMTP": "smtp_server_message_received",
    "HTTP": "http_message_generated",
    "Kafka": "http_message_generated",
}


class PolicyLoadError(Exception):
    """The policy file cannot be used: unreadable, a syntax error, or its top level failed.
    The message names the file and, where there is one, the line: `policy.lua:7: ...`."""


class PolicyRuntimeError(Exception):
    """A handler failed outside a message (get_queue_config). `reason` is "error",
    "budget" (instruction budget exhausted), "timeout" (deadline passed), "memory"
    (memory limit exceeded) or "reject" (kumo.reject in an egress event or
    get_listener_domain; `rejection` then holds its code and text)."""

    def __init__(
        self,
        message: str,
        reason: str = "error",
        traceback: str = "",
        rejection: PolicyRejected | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.traceback = traceback
        self.rejection = rejection


@dataclass(frozen=True, slots=True)
class PolicyLimits:
    """What one handler call may consume. The instruction budget is counted in steps of
    `instruction_step` Lua VM instructions; the memory limit covers the whole Lua state; a
    call still running `deadline_seconds` (wall clock) after it started is stopped, whatever
    it is doing (see guards.lua for the C functions this covers)."""

    instruction_budget: int = 10_000_000
    instruction_step: int = 1_000
    memory_bytes: int = 64 * 1024 * 1024
    # The default of the routing.policy_deadline_seconds setting.
    deadline_seconds: float = 1.0


@dataclass(frozen=True, slots=True)
class PolicyMessage:
    """One message (one recipient) as the reception policy sees it.

    `sender` and `recipient` are bare envelope addresses (`user@domain`; the null sender is
    ""); `headers` is the RFC 5322 header block (folded lines allowed, body excluded);
    `data` is the whole message (headers and body) when the caller has it, None when only
    the header block is known (a message method that needs the body then fails clearly)."""

    id: str
    sender: str
    recipient: str
    meta: Mapping[str, JsonValue] = field(default_factory=dict)
    headers: str = ""
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class PolicyAccepted:
    """The handler returned: `meta` is the message's meta after it (input meta + set_meta).
    `sender`, `recipient` and `data` are the envelope and message as the handler left them
    (msg:set_sender, msg:append_header, msg:dkim_sign, ...), None where it changed nothing."""

    meta: dict[str, JsonValue]
    sender: str | None = None
    recipient: str | None = None
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class PolicyRejected:
    """The handler called `kumo.reject(code, text)`; `text` may start with an enhanced
    status code (`5.7.1 ...`), as in KumoMTA."""

    code: int
    text: str

    @property
    def response(self) -> str:
        return f"{self.code} {self.text}"


# KumoMTA answers a failing reception handler with a transient "technical difficulties".
POLICY_FAILURE_CODE = 451
POLICY_FAILURE_TEXT = "4.3.0 technical difficulties"


@dataclass(frozen=True, slots=True)
class PolicyFailed:
    """The handler raised an error, ran out of its instruction budget, its time or memory.
    `reason` is "error", "budget", "timeout" or "memory"; `message` names file and line."""

    reason: str
    message: str
    traceback: str = ""

    def as_rejection(self) -> PolicyRejected:
        """The rejection the routing service records for this message (never a crash)."""
        return PolicyRejected(POLICY_FAILURE_CODE, POLICY_FAILURE_TEXT)


PolicyResult: TypeAlias = PolicyAccepted | PolicyRejected | PolicyFailed


@dataclass(frozen=True, slots=True)
class EventReturned:
    """An SMTP-time event handler returned normally; `value` is what it returned (None:
    nothing), e.g. smtp_server_ehlo's extension list or smtp_server_auth_plain's verdict."""

    value: JsonValue = None


EventResult: TypeAlias = EventReturned | PolicyRejected | PolicyFailed
