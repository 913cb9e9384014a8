"""The policy at reception, as KumoMTA runs it: before the client gets its answer.

Ingest runs the SMTP-time events during the dialogue (smtp_server_connection_accepted, _ehlo,
_mail_from, _rcpt_to, _auth_plain) and the reception handler on each message
(smtp_server_message_received for SMTP before the reply to DATA, http_message_generated for
the injection API before it answers and for `submit` records before they are accepted). What
the handler leaves (meta, and the envelope and message where it changed them) is what ingest
accepts; the record carries the policy that ran and the handler's inputs
(`reception_policy`), so routing only names the queue and the decision it writes can still be
replayed (`relaystream audit verify`).

A Lua state runs one call at a time, and a call may run until its deadline: calls run one at
a time on one worker thread, in the order they came, so a slow policy call holds up only the
sessions that wait for the policy, not the event loop. The `submit` loop converts a batch on a
thread of its own (`run_batch`), where each record's call queues for the policy thread like a
client's: a batch holds the policy one record at a time, never the whole batch. A call from an
SMTP session or an HTTP request that has waited `queue_seconds` for the policy thread without
starting is dropped and answered as a policy failure (451 4.3.0): nothing is accepted, and a
client that keeps the thread busy cannot make every other client wait without bound.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar, cast

from ..core.domain.listener_domain import ListenerDomain
from ..core.domain.smtp_reply import SmtpResponse, split_enhanced_code
from ..core.events.meta import MetaError, decode_meta
from ..core.events.records import MessageAccepted, ReceptionPolicyRun
from ..core.events.records import SmtpResponse as SmtpResponseRecord
from ..core.policy import (
    GET_LISTENER_DOMAIN,
    ConnectionMeta,
    EventResult,
    EventReturned,
    Policy,
    PolicyFailed,
    PolicyMessage,
    PolicyRejected,
    PolicyRuntimeError,
    ReceptionProtocol,
)
from ..core.policy.headers import header_block
from ..core.policy.routing_rule import (
    RecipientDomainError,
    RefusedMessage,
    RoutedMessage,
    route_message,
)
from ..core.policy.types import POLICY_FAILURE_CODE, POLICY_FAILURE_TEXT
from ..core.runtime.settings import IngestSettings

T = TypeVar("T")

POLICY_QUEUE_SECONDS = IngestSettings.policy_queue_seconds  # the setting's default
# PolicyFailed.reason of a call dropped after waiting POLICY_QUEUE_SECONDS for the thread.
QUEUE_TIMEOUT = "queue"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Refused:
    """The reception handler refused one message: `response` is the reply the client gets
    (kumo.reject's, or 451 4.3.0 for a policy failure, whose text `failure` names file and
    line)."""

    message_id: str
    recipient: str
    response: PolicyRejected
    failure: str | None

    @property
    def reply(self) -> str:
        return self.response.response


class PolicyQueueTimeout(Exception):
    """A client's policy call waited too long for the policy thread and was dropped."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the policy was busy: the call waited {seconds:g} s and did not run")

    def failure(self) -> PolicyFailed:
        return PolicyFailed(QUEUE_TIMEOUT, str(self))


class ReceptionPolicy:
    """The deployment's policy as ingest runs it (see the module doc)."""

    def __init__(
        self,
        policy: Policy,
        max_message_size: int | None = None,
        queue_seconds: float = POLICY_QUEUE_SECONDS,
    ) -> None:
        """`max_message_size`: a message the handler makes larger is refused (552 5.3.4), as
        one the client sent that large would be. `queue_seconds`: see the module doc."""
        self.policy = policy
        self._max_message_size = max_message_size
        self._queue_seconds = queue_seconds
        # Every policy call runs here, one at a time: the Lua state is not shared.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy")
        self._batch_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch")

    def close(self) -> None:
        self._batch_executor.shutdown(wait=True, cancel_futures=True)
        self._executor.shutdown(wait=True, cancel_futures=True)

    def has_handler(self, event: str) -> bool:
        return self.policy.has_handler(event)

    async def run(self, call: Callable[[], T]) -> T:
        """`call` on the policy thread, after the calls queued before it."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, call)

    async def run_batch(self, call: Callable[[], T]) -> T:
        """Work that runs the policy through `receive_now` and must not hold up the event
        loop (the submit loop's batches), on a thread of its own (see the module doc)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._batch_executor, call)

    async def _run_for_client(self, call: Callable[[], T]) -> T:
        """`run` for a client waiting for its answer: PolicyQueueTimeout when the call did not
        start within `queue_seconds` (it then never runs). One timer per call."""
        future = self._executor.submit(call)
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = future.cancel()  # False once it runs: then it finishes by its deadline

        timer = asyncio.get_running_loop().call_later(self._queue_seconds, expire)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if expired:
                raise PolicyQueueTimeout(self._queue_seconds) from None
            raise
        finally:
            timer.cancel()

    async def event(
        self, event: str, args: Sequence[object], connection: ConnectionMeta
    ) -> EventResult:
        """One SMTP-time event; a policy without its handler answers nothing at once."""
        if not self.policy.has_handler(event):
            return EventReturned()
        try:
            return await self._run_for_client(
                lambda: self.policy.on_smtp_event(event, args, connection)
            )
        except PolicyQueueTimeout as timeout:
            return timeout.failure()

    async def listener_domain(
        self, domain: str, listener: str, connection: ConnectionMeta
    ) -> ListenerDomain | PolicyRejected | PolicyFailed | None:
        """get_listener_domain for `domain` on the listener at `listener` (ip:port): its
        listener domain, None when the policy has none, or how it refused or failed."""
        if not self.policy.has_handler(GET_LISTENER_DOMAIN):
            return None
        try:
            return await self._run_for_client(
                lambda: self._listener_domain(domain, listener, connection)
            )
        except PolicyQueueTimeout as timeout:
            return timeout.failure()

    def _listener_domain(
        self, domain: str, listener: str, connection: ConnectionMeta
    ) -> ListenerDomain | PolicyRejected | PolicyFailed | None:
        try:
            return self.policy.get_listener_domain(domain, listener, connection)
        except PolicyRuntimeError as error:
            if error.rejection is not None:
                return error.rejection
            return PolicyFailed(error.reason, str(error), error.traceback)

    async def receive(
        self,
        protocol: ReceptionProtocol,
        events: Sequence[MessageAccepted],
        connection: ConnectionMeta | None = None,
        *,
        stop_at_refusal: bool = False,
    ) -> list[MessageAccepted | Refused]:
        """The reception handler on each message of one reception, in order. With
        `stop_at_refusal` (SMTP, where one refusal refuses the transaction) the messages after
        the first refusal are not run: the list ends there."""
        try:
            return await self._run_for_client(
                lambda: self._receive_all(protocol, events, connection, stop_at_refusal)
            )
        except PolicyQueueTimeout as timeout:
            text = timeout.failure().message
            refused: list[MessageAccepted | Refused] = [
                Refused(event["id"], event["recipient"], _failure_response(), text)
                for event in events
            ]
            return refused[:1] if stop_at_refusal else refused

    def receive_now(
        self,
        protocol: ReceptionProtocol,
        events: Sequence[MessageAccepted],
        connection: ConnectionMeta | None = None,
    ) -> list[MessageAccepted | Refused]:
        """`receive` for a synchronous caller (the `submit` converter), which waits for its
        turn on the policy thread; never called from the policy thread itself."""
        return self._executor.submit(self._receive_all, protocol, events, connection).result()

    def _receive_all(
        self,
        protocol: ReceptionProtocol,
        events: Sequence[MessageAccepted],
        connection: ConnectionMeta | None,
        stop_at_refusal: bool = False,
    ) -> list[MessageAccepted | Refused]:
        results: list[MessageAccepted | Refused] = []
        for event in events:
            try:
                result = self._received(protocol, event, connection)
            except Exception as error:  # a bug of ours: refused for now (451), never a 500
                log.exception("reception policy: unexpected error", extra={"id": event["id"]})
                result = Refused(event["id"], event["recipient"], _failure_response(), repr(error))
            results.append(result)
            if stop_at_refusal and isinstance(result, Refused):
                break
        return results

    def _received(
        self,
        protocol: ReceptionProtocol,
        event: MessageAccepted,
        connection: ConnectionMeta | None,
    ) -> MessageAccepted | Refused:
        try:
            meta = decode_meta(event["meta"])
        except MetaError as error:  # ingest encoded it: a bug, refused rather than lost
            return Refused(event["id"], event["recipient"], _failure_response(), str(error))
        message = PolicyMessage(
            id=event["id"],
            sender=event["sender"],
            recipient=event["recipient"],
            meta=meta,
            headers=header_block(event["content"]),
            data=event["content"],
        )
        try:
            routed = route_message(self.policy, protocol, message, connection)
        except RecipientDomainError as error:
            return Refused(
                event["id"], event["recipient"], PolicyRejected(553, f"5.1.3 {error}"), None
            )
        if isinstance(routed, RefusedMessage):
            failure = None if routed.failure is None else routed.failure.message
            return Refused(event["id"], event["recipient"], routed.rejection, failure)
        limit = self._max_message_size
        if routed.data_after is not None and limit is not None and len(routed.data_after) > limit:
            return Refused(
                event["id"],
                event["recipient"],
                PolicyRejected(552, f"5.3.4 the policy made the message larger than {limit} bytes"),
                None,
            )
        return self._applied(event, message, routed)

    def _applied(
        self, event: MessageAccepted, message: PolicyMessage, routed: RoutedMessage
    ) -> MessageAccepted:
        run = self._run_record(event)
        run["sender_before"] = event["sender"] if routed.sender_after is not None else None
        run["recipient_before"] = event["recipient"] if routed.recipient_after is not None else None
        run["headers_before"] = message.headers if routed.data_after is not None else None
        return {
            **event,
            "sender": event["sender"] if routed.sender_after is None else routed.sender_after,
            "recipient": event["recipient"]
            if routed.recipient_after is None
            else routed.recipient_after,
            "content": event["content"] if routed.data_after is None else routed.data_after,
            "meta": routed.encoded_meta_after,
            "reception_policy": run,
        }

    def refused_record(self, event: MessageAccepted, refused: Refused) -> MessageAccepted:
        """A submission's message the handler refused, as routing records it: the message as
        it came, marked with the refusal (routing writes the Rejection, queues nothing)."""
        run = self._run_record(event)
        run["rejection"] = response_record(refused.response)
        run["failure"] = refused.failure
        return {**event, "reception_policy": run}

    def _run_record(self, event: MessageAccepted) -> ReceptionPolicyRun:
        return {
            "policy_hash": self.policy.content_hash,
            "policy_name": self.policy.name,
            "meta_before": dict(event["meta"]),
            "sender_before": None,
            "recipient_before": None,
            "headers_before": None,
            "rejection": None,
            "failure": None,
        }


def _failure_response() -> PolicyRejected:
    return PolicyRejected(POLICY_FAILURE_CODE, POLICY_FAILURE_TEXT)


def response_record(response: PolicyRejected) -> SmtpResponseRecord:
    """A policy's reply as the events record it."""
    enhanced, text = split_enhanced_code(response.text)
    return cast(SmtpResponseRecord, SmtpResponse(response.code, enhanced, text).to_dict())


def first_refusal(results: Sequence[MessageAccepted | Refused]) -> Refused | None:
    """KumoMTA: refusing any one message of a transaction refuses the whole transaction."""
    for result in results:
        if isinstance(result, Refused):
            return result
    return None
