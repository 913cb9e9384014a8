"""Routing policies: KumoMTA-compatible Lua (sandboxed, lupa/Lua 5.4) and declarative YAML.

`policy_from_file(path)` reads either (`policy_from_source` takes the text); both return plain
data (meta dicts, queue config mappings) that the routing service turns into queue names and
`QueueConfig`s.
"""

from .base import Policy, content_hash
from .loader import configured_policy, policy_from_file, policy_from_source, service_policy
from .types import (
    GET_LISTENER_DOMAIN,
    HANDLER_FOR_PROTOCOL,
    SMTP_AUTH_PLAIN,
    SMTP_CONNECTION_ACCEPTED,
    SMTP_EHLO,
    SMTP_MAIL_FROM,
    SMTP_RCPT_TO,
    SMTP_SESSION_EVENTS,
    ConnectionMeta,
    EventResult,
    EventReturned,
    JsonValue,
    PolicyAccepted,
    PolicyFailed,
    PolicyLimits,
    PolicyLoadError,
    PolicyMessage,
    PolicyRejected,
    PolicyResult,
    PolicyRuntimeError,
    ReceptionProtocol,
)

__all__ = [
    "GET_LISTENER_DOMAIN",
    "HANDLER_FOR_PROTOCOL",
    "SMTP_AUTH_PLAIN",
    "SMTP_CONNECTION_ACCEPTED",
    "SMTP_EHLO",
    "SMTP_MAIL_FROM",
    "SMTP_RCPT_TO",
    "SMTP_SESSION_EVENTS",
    "ConnectionMeta",
    "EventResult",
    "EventReturned",
    "JsonValue",
    "Policy",
    "PolicyAccepted",
    "PolicyFailed",
    "PolicyLimits",
    "PolicyLoadError",
    "PolicyMessage",
    "PolicyRejected",
    "PolicyResult",
    "PolicyRuntimeError",
    "ReceptionProtocol",
    "configured_policy",
    "content_hash",
    "policy_from_file",
    "policy_from_source",
    "service_policy",
]
