"""The routing rule: what becomes of one message, given a policy.

One place for it, because four callers must agree on it: ingest, which runs the reception
handler before it answers the client (`ingest.reception`), the routing service for records
whose handler did not run at ingest, the audit's replay of recorded decisions
(`core.audit.verify`) and `relaystream route`. The rule:

- the reception policy runs on the message's inputs (protocol, sender, recipient, meta,
  header block or whole message);
- `kumo.reject(code, text)` refuses the message with that response;
- a policy failure (error, instruction budget, memory, deadline) refuses it with KumoMTA's
  `451 4.3.0 technical difficulties` (`PolicyFailed.as_rejection`);
- otherwise the scheduled queue is `QueueName.for_message(recipient domain, meta after)`, with
  the recipient as the handler left it (msg:set_recipient); the queue `null` discards the
  message. Meta after that cannot name a queue (a non-string `queue`), a changed recipient
  without a valid domain, or meta that cannot be recorded as JSON (NaN from Lua) is a policy
  failure too.

The recipient's domain is checked before the policy runs: a recipient without a valid domain
cannot be routed by any policy, so that is the caller's error (`RecipientDomainError`), which
each caller reports in its own terms.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..domain.queue_name import (
    QueueName,
    QueueNameError,
    is_null_queue,
    normalize_recipient_domain,
)
from ..events.meta import MetaError, encode_meta
from .base import Policy
from .types import (
    ConnectionMeta,
    JsonValue,
    PolicyAccepted,
    PolicyFailed,
    PolicyMessage,
    PolicyRejected,
    PolicyResult,
    ReceptionProtocol,
)


class RecipientDomainError(ValueError):
    """An envelope recipient without a domain that can name a queue."""


@dataclass(frozen=True, slots=True)
class RoutedMessage:
    """The policy accepted the message: it joins `queue` (or is discarded, the null queue)."""

    queue: str
    meta_after: dict[str, JsonValue]
    encoded_meta_after: dict[str, str]  # meta_after as the events record it (JSON texts)
    # The envelope and message as the handler left them; None where it changed nothing.
    sender_after: str | None = None
    recipient_after: str | None = None
    data_after: bytes | None = None

    @property
    def discarded(self) -> bool:
        return is_null_queue(self.queue)


@dataclass(frozen=True, slots=True)
class RefusedMessage:
    """The message is rejected with `rejection`.

    `failure` is None when the policy itself rejected (`kumo.reject`); otherwise it says why
    the policy failed. `meta_error` is set when the policy returned but its meta cannot name
    a queue or cannot be recorded. `meta_after` is the policy's meta in that case, else the
    meta the message arrived with (a rejecting or failing handler changes nothing).
    """

    rejection: PolicyRejected
    failure: PolicyFailed | None
    meta_after: Mapping[str, JsonValue]
    meta_error: str | None = None


def recipient_domain(recipient: str) -> str:
    """The domain of an envelope recipient (the text after its last `@`: a quoted local part
    may hold `@`, a domain may not), as written. Raises RecipientDomainError when there is
    no local part or no domain, or the domain cannot be part of a queue name."""
    local, at, domain = recipient.rpartition("@")
    if not at or not local or not domain:
        raise RecipientDomainError(f"recipient {recipient!r} has no domain")
    try:
        normalize_recipient_domain(domain)
    except QueueNameError as err:
        raise RecipientDomainError(f"recipient {recipient!r}: {err}") from err
    return domain


def route_message(
    policy: Policy,
    protocol: ReceptionProtocol,
    message: PolicyMessage,
    connection: ConnectionMeta | None = None,
) -> RoutedMessage | RefusedMessage:
    """Runs the reception policy on `message` and applies the routing rule to its result.
    `connection`: the SMTP session's conn_meta, when there is a live one (ingest).

    Raises RecipientDomainError (before running the policy) for a recipient without a
    valid domain. A policy never raises here: its failures are RefusedMessage.
    """
    recipient_domain(message.recipient)
    result = policy.on_message_received(protocol, message, connection)
    return apply_routing_rule(policy.name, message, result)


def apply_routing_rule(
    policy_name: str, message: PolicyMessage, result: PolicyResult
) -> RoutedMessage | RefusedMessage:
    """The rule applied to what the reception handler answered for `message`."""
    if isinstance(result, PolicyRejected):
        return RefusedMessage(result, None, message.meta)
    if isinstance(result, PolicyFailed):
        return RefusedMessage(result.as_rejection(), result, message.meta)
    return _accepted(policy_name, message, result)


def _changed(before: str, after: str | None) -> str | None:
    return None if after is None or after == before else after


def _accepted(
    policy_name: str, message: PolicyMessage, result: PolicyAccepted
) -> RoutedMessage | RefusedMessage:
    recipient_after = _changed(message.recipient, result.recipient)
    try:
        domain = recipient_domain(recipient_after or message.recipient)
        queue = QueueName.for_message(domain, result.meta)
        encoded = encode_meta(result.meta)
    except (QueueNameError, MetaError, RecipientDomainError) as err:
        failure = PolicyFailed("error", f"{policy_name}: {err}")
        return RefusedMessage(failure.as_rejection(), failure, result.meta, str(err))
    data_after = None if result.data is None or result.data == message.data else result.data
    return RoutedMessage(
        queue,
        result.meta,
        encoded,
        sender_after=_changed(message.sender, result.sender),
        recipient_after=recipient_after,
        data_after=data_after,
    )
