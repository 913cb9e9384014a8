"""One routing decision: a MessageAccepted, the reception policy's outcome, the queue name,
the events.

Ingest runs the reception handler before it answers the client and records on the message
what ran (`reception_policy`: the policy's hash and name, the handler's inputs). For such a
record routing runs no policy (the handler's side effects happen once): it names the queue from
the meta the handler left, and writes the decision with the inputs and the policy ingest ran,
so `relaystream audit verify` replays it as before (`reception_stage` "ingest"). A submission
the handler refused arrives marked with the refusal: routing records its Rejection. A record
without `reception_policy` (written before ingest ran the policy) is decided here as it always
was: routing runs the handler. The routing rule itself (policy result to queue, discard or
rejection) is `core.policy.routing_rule`, shared with ingest and the audit's replay.

Pure apart from the policy call (CPU only): `decide(accepted, policy, decided_at=...)` returns
the events the service produces for one message. Everything but `decided_at` is derived from
the accepted record and the policy, so re-running a message after a crash (at-least-once)
produces identical `queued` and `log` records: `due_at` and the log timestamps are the
reception time, not the wall clock. A message is due from the moment it was received; the
scheduler releases anything whose due time has passed, so this is the same as "due now".

Policy failures (a Lua error, an exhausted instruction budget or memory limit, meta that cannot
name a queue) do not stop the service: the message is REJECTED with KumoMTA's answer for a
failing reception handler, `451 4.3.0 technical difficulties` (`PolicyFailed.as_rejection`).
The code is transient on purpose: the mail is not bounced to its sender, and the service
additionally dead-letters the original record (see `RoutingResult.policy_failure`) so an
operator can replay it once the policy is fixed. It is not retried in place: one broken
message must not hold up its partition forever.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from ..core.domain.log_record import LogRecord, PeerAddress, RecordType
from ..core.domain.log_writer import ANONYMOUS, LogWriter
from ..core.domain.queue_name import QueueName, QueueNameError, is_null_queue
from ..core.domain.smtp_reply import SmtpResponse, split_enhanced_code
from ..core.events.meta import MetaError, decode_meta, encode_meta
from ..core.events.records import (
    MessageAccepted,
    QueuedMessage,
    ReceptionPolicyRun,
    RoutingDecision,
    RoutingOutcome,
)
from ..core.events.records import SmtpResponse as SmtpResponseRecord
from ..core.policy import (
    JsonValue,
    Policy,
    PolicyFailed,
    PolicyMessage,
    ReceptionProtocol,
    routing_rule,
)
from ..core.policy.headers import header_block
from ..core.policy.routing_rule import (
    RecipientDomainError,
    RefusedMessage,
    route_message,
)

# The header block is audit data in the decision; `decisions` takes records of about 1 MiB, so
# a pathological header block (a message without a body separator) is cut in the decision only.
# The policy always sees the whole block.
MAX_DECISION_HEADER_CHARS = 64 * 1024
# Meta keys copied onto log records (KumoMTA logs only the keys its log config names).
LOGGED_META_KEYS = ("tenant", "campaign", "routing_domain", "queue")
# KumoMTA's Reception record carries a bare 250 without text.
RECEPTION_RESPONSE = SmtpResponse(250, None, "")
# RoutingDecision.reception_stage of a decision whose handler ran at ingest.
INGEST_STAGE = "ingest"


@dataclass(frozen=True)
class DecisionInputs:
    """What the decision records as the reception handler's inputs and the policy that ran."""

    sender: str
    recipient: str
    headers: str
    meta_before: dict[str, str]
    policy_hash: str
    policy_name: str
    stage: str | None = None
    sender_after: str | None = None
    recipient_after: str | None = None

    @classmethod
    def at_routing(cls, accepted: MessageAccepted, policy: Policy) -> DecisionInputs:
        return cls(
            accepted["sender"],
            accepted["recipient"],
            header_block(accepted["content"]),
            dict(accepted["meta"]),
            policy.content_hash,
            policy.name,
        )

    @classmethod
    def at_ingest(cls, accepted: MessageAccepted, run: ReceptionPolicyRun) -> DecisionInputs:
        return cls(
            run["sender_before"] or accepted["sender"],
            run["recipient_before"] or accepted["recipient"],
            run["headers_before"] or header_block(accepted["content"]),
            dict(run["meta_before"]),
            run["policy_hash"],
            run["policy_name"],
            INGEST_STAGE,
            accepted["sender"] if run["sender_before"] is not None else None,
            accepted["recipient"] if run["recipient_before"] is not None else None,
        )


class InvalidAccepted(ValueError):
    """A MessageAccepted that no policy can route (bad meta JSON, unknown protocol, a
    recipient without a valid domain): it goes to the dead-letter topic."""


@dataclass(frozen=True)
class RoutingResult:
    """The events of one decision, as the codec takes them.

    `queued` is None unless the outcome is QUEUED. `policy_failure` describes a failed policy
    (the message is REJECTED and also dead-lettered for a replay); None otherwise.
    """

    decision: RoutingDecision
    queued: QueuedMessage | None
    log: dict[str, Any]
    policy_failure: PolicyFailed | None = None

    @property
    def outcome(self) -> RoutingOutcome:
        return self.decision["outcome"]


def recipient_domain(recipient: str) -> str:
    """The domain of an envelope recipient (the text after its last `@`)."""
    try:
        return routing_rule.recipient_domain(recipient)
    except RecipientDomainError as err:
        raise InvalidAccepted(str(err)) from err


def decide(
    accepted: MessageAccepted,
    policy: Policy,
    *,
    decided_at: datetime,
    log_writer: LogWriter = ANONYMOUS,
) -> RoutingResult:
    """Runs the reception policy on `accepted` and builds the resulting events; `log_writer`
    stamps the log record (node id, bounce class of a Rejection).

    Raises InvalidAccepted for a record that cannot be routed at all.
    """
    protocol = _protocol(accepted["reception_protocol"])
    try:
        meta_before = decode_meta(accepted["meta"])
    except MetaError as err:
        raise InvalidAccepted(str(err)) from err
    run = accepted.get("reception_policy")
    if run is not None:
        return _decided_at_ingest(accepted, run, meta_before, decided_at, log_writer)
    inputs = DecisionInputs.at_routing(accepted, policy)
    message = PolicyMessage(
        id=accepted["id"],
        sender=accepted["sender"],
        recipient=accepted["recipient"],
        meta=meta_before,
        headers=inputs.headers,
        data=accepted["content"],
    )
    try:
        routed = route_message(policy, protocol, message)
    except RecipientDomainError as err:
        raise InvalidAccepted(str(err)) from err
    if isinstance(routed, RefusedMessage):
        return _rejected(accepted, inputs, routed, decided_at, log_writer)
    if routed.sender_after or routed.recipient_after or routed.data_after is not None:
        # The handler changed the message: routing queues it as the handler left it.
        accepted = {
            **accepted,
            "sender": routed.sender_after or accepted["sender"],
            "recipient": routed.recipient_after or accepted["recipient"],
            "content": accepted["content"] if routed.data_after is None else routed.data_after,
        }
        inputs = replace(
            inputs, sender_after=routed.sender_after, recipient_after=routed.recipient_after
        )
    return _routed(
        accepted, inputs, routed.queue, routed.encoded_meta_after, decided_at, log_writer
    )


def _decided_at_ingest(
    accepted: MessageAccepted,
    run: ReceptionPolicyRun,
    meta: dict[str, JsonValue],
    decided_at: datetime,
    log_writer: LogWriter,
) -> RoutingResult:
    """Ingest ran the handler: the queue from the meta it left, or the refusal it recorded."""
    inputs = DecisionInputs.at_ingest(accepted, run)
    rejection = run["rejection"]
    if rejection is not None:
        failure = None if run["failure"] is None else PolicyFailed("error", run["failure"])
        response = SmtpResponse.from_dict(rejection)
        return _refused(accepted, inputs, response, failure, decided_at, log_writer)
    try:
        queue = QueueName.for_message(recipient_domain(accepted["recipient"]), meta)
    except QueueNameError as err:
        raise InvalidAccepted(f"meta cannot name a queue: {err}") from err
    return _routed(accepted, inputs, queue, dict(accepted["meta"]), decided_at, log_writer)


def _protocol(name: str) -> ReceptionProtocol:
    if name == "ESMTP":
        return "ESMTP"
    if name == "HTTP":
        return "HTTP"
    if name == "Kafka":
        return "Kafka"
    raise InvalidAccepted(f"unknown reception_protocol {name!r}")


def _decision(
    accepted: MessageAccepted,
    inputs: DecisionInputs,
    decided_at: datetime,
    *,
    meta_after: dict[str, str],
    outcome: RoutingOutcome,
    queue: str | None,
    rejection: SmtpResponseRecord | None,
) -> RoutingDecision:
    parsed = QueueName.parse(queue) if queue is not None else None
    return {
        "id": accepted["id"],
        "decided_at": decided_at,
        "received_at": accepted["received_at"],
        "sender": inputs.sender,
        "recipient": inputs.recipient,
        "reception_protocol": accepted["reception_protocol"],
        "headers": inputs.headers[:MAX_DECISION_HEADER_CHARS],
        "meta_before": inputs.meta_before,
        "meta_after": meta_after,
        "outcome": outcome,
        "queue": queue,
        "campaign": parsed.campaign if parsed else None,
        "tenant": parsed.tenant if parsed else None,
        "domain": parsed.domain if parsed else None,
        "routing_domain": parsed.routing_domain if parsed else None,
        "rejection": rejection,
        "policy_hash": inputs.policy_hash,
        "policy_name": inputs.policy_name,
        "reception_stage": inputs.stage,
        "sender_after": inputs.sender_after,
        "recipient_after": inputs.recipient_after,
    }


def _log_record(
    accepted: MessageAccepted,
    kind: RecordType,
    queue: str,
    response: SmtpResponse,
    meta: Mapping[str, JsonValue],
    log_writer: LogWriter,
) -> dict[str, Any]:
    logged = encode_meta({key: meta[key] for key in LOGGED_META_KEYS if key in meta})
    record = LogRecord(
        type=kind,
        id=accepted["id"],
        sender=accepted["sender"],
        recipients=(accepted["recipient"],),
        queue=queue,
        response=response,
        # The reception time, as KumoMTA stamps Reception and Rejection records.
        timestamp=accepted["received_at"],
        created=accepted["received_at"],
        size=len(accepted["content"]),
        peer_address=_reception_peer(meta),
        reception_protocol=accepted["reception_protocol"],
        meta=logged,
    )
    return log_writer.stamp(record).to_avro()


def _reception_peer(meta: Mapping[str, JsonValue]) -> PeerAddress | None:
    """KumoMTA's peer of a Reception or Rejection: the client's EHLO name and address, from
    the connection facts ingest put in the meta (none for a Kafka submission)."""
    address, ehlo = meta.get("received_from"), meta.get("ehlo_domain")
    if not isinstance(address, str) or not address:
        return None
    return PeerAddress(name=ehlo if isinstance(ehlo, str) else "", addr=address)


def _routed(
    accepted: MessageAccepted,
    inputs: DecisionInputs,
    queue: str,
    meta_after: dict[str, str],
    decided_at: datetime,
    log_writer: LogWriter,
) -> RoutingResult:
    discarded = is_null_queue(queue)
    decision = _decision(
        accepted,
        inputs,
        decided_at,
        meta_after=meta_after,
        outcome="DISCARDED" if discarded else "QUEUED",
        queue=queue,
        rejection=None,
    )
    log = _log_record(
        accepted,
        RecordType.RECEPTION,
        queue,
        RECEPTION_RESPONSE,
        decode_meta(meta_after),
        log_writer,
    )
    if discarded:
        return RoutingResult(decision, None, log)
    queued: QueuedMessage = {
        "id": accepted["id"],
        "queue": queue,
        "sender": accepted["sender"],
        "recipient": accepted["recipient"],
        "content": accepted["content"],
        "meta": meta_after,
        "created_at": accepted["received_at"],
        "due_at": accepted["received_at"],
        "attempts": 0,
        "last_response": None,
    }
    return RoutingResult(decision, queued, log)


def _rejected(
    accepted: MessageAccepted,
    inputs: DecisionInputs,
    refused: RefusedMessage,
    decided_at: datetime,
    log_writer: LogWriter,
) -> RoutingResult:
    enhanced, text = split_enhanced_code(refused.rejection.text)
    response = SmtpResponse(refused.rejection.code, enhanced, text)
    return _refused(accepted, inputs, response, refused.failure, decided_at, log_writer)


def _refused(
    accepted: MessageAccepted,
    inputs: DecisionInputs,
    response: SmtpResponse,
    failure: PolicyFailed | None,
    decided_at: datetime,
    log_writer: LogWriter,
) -> RoutingResult:
    meta_before = decode_meta(accepted["meta"])
    decision = _decision(
        accepted,
        inputs,
        decided_at,
        meta_after=dict(accepted["meta"]),
        outcome="REJECTED",
        queue=None,
        rejection=_response_record(response),
    )
    # KumoMTA names the queue the message would have joined; from the meta it arrived with.
    try:
        queue = QueueName.for_message(recipient_domain(accepted["recipient"]), meta_before)
    except (QueueNameError, InvalidAccepted):
        queue = ""
    log = _log_record(accepted, RecordType.REJECTION, queue, response, meta_before, log_writer)
    return RoutingResult(decision, None, log, failure)


def _response_record(response: SmtpResponse) -> SmtpResponseRecord:
    enhanced = response.enhanced_code
    return {
        "code": response.code,
        "enhanced_code": None
        if enhanced is None
        else {"class": enhanced.class_, "subject": enhanced.subject, "detail": enhanced.detail},
        "content": response.content,
        "command": response.command,
    }
