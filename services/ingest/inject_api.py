"""`POST /api/inject/v1` (aiohttp), request and response as KumoMTA's.

200 `{"success_count", "fail_count", "failed_recipients", "errors"}` once every built message is
written to Kafka (one atomic write; a recipient whose address or message is invalid, or whose
message the policy refuses, fails alone, as in KumoMTA, with an error "<email>: <reason>").
`temporarily_failed_recipients` (relaystream's) names those of `failed_recipients` whose
refusal was temporary (a 4xx reply: a policy failure, a busy policy, kumo.reject with 4xx):
retrying them may succeed, the others never will. When nothing was accepted and some failure
is temporary the status is 503, with the same body: the request may be sent again whole, as
none of it was accepted. Every refusal is `{"errors": [reasons]}`: 400 for a body that is not a
JSON object (not UTF-8, not JSON, nested deeper than inject_limits.MAX_JSON_DEPTH); 422 for a
request that is not valid, a field over its limit included; 401 without a valid bearer token
where tokens are required; 413 over the body size limit; 503 when Kafka does not commit (then
none of the messages is visible).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from ..core.domain.envelope import EnvelopeAddress, EnvelopeAddressError
from ..core.events.records import MessageAccepted
from ..core.policy import ReceptionProtocol
from . import metrics
from .accepted_messages import Reception, accepted_messages
from .acceptor import AcceptanceFailed, AtomicAcceptor
from .inject_limits import BadJson, parse_json_body
from .inject_request import InjectRequest, InvalidRequest, parse_inject_request
from .message_builder import MessageBuildError, build_message
from .message_ids import new_message_id
from .reception import ReceptionPolicy, Refused

log = logging.getLogger(__name__)

PROTOCOL: ReceptionProtocol = "HTTP"
INJECT_PATH = "/api/inject/v1"


class TokensRequired(ValueError):
    """The API would listen beyond loopback with no token configured."""


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def require_tokens(bind_host: str, tokens: Sequence[str]) -> bool:
    """Whether requests need a bearer token: always when tokens are configured; listening
    beyond loopback without any is refused (TokensRequired)."""
    if tokens:
        return True
    if not is_loopback_host(bind_host):
        raise TokensRequired(
            f"the injection API listens on {bind_host}, beyond loopback: configure "
            "RELAYSTREAM_INGEST_API_TOKENS or RELAYSTREAM_INGEST_API_TOKENS_FILE"
        )
    return False


def token_matches(presented: str, tokens: Sequence[str]) -> bool:
    """Constant-time comparison against every token (no early exit on a match)."""
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(presented.encode(), token.encode())
    return matched


@dataclass(frozen=True)
class InjectApiConfig:
    hostname: str
    max_recipients: int
    max_message_size: int
    max_request_bytes: int
    tokens: tuple[str, ...]
    tokens_required: bool


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


def _invalid(status: int, reasons: list[str]) -> web.Response:
    metrics.MESSAGES_REJECTED.labels(PROTOCOL, "invalid_request").inc()
    return _json(status, {"errors": reasons})


class InjectApi:
    def __init__(
        self, config: InjectApiConfig, acceptor: AtomicAcceptor, reception: ReceptionPolicy
    ) -> None:
        self._config = config
        self._acceptor = acceptor
        self._reception = reception

    def application(self) -> web.Application:
        app = web.Application(client_max_size=self._config.max_request_bytes)
        app.router.add_post(INJECT_PATH, self.inject)
        return app

    def _authorized(self, request: web.Request) -> bool:
        if not self._config.tokens_required:
            return True
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and token_matches(presented.strip(), self._config.tokens)

    async def inject(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            metrics.MESSAGES_REJECTED.labels(PROTOCOL, "unauthorized").inc()
            return web.Response(
                status=401,
                text=json.dumps({"errors": ["a valid bearer token is required"]}),
                content_type="application/json",
                headers={"WWW-Authenticate": 'Bearer realm="relaystream"'},
            )
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            limit = self._config.max_request_bytes
            return _invalid(413, [f"request body exceeds the limit of {limit} bytes"])
        try:
            body = parse_json_body(raw)
        except BadJson as error:
            return _invalid(400, [str(error)])
        if not isinstance(body, dict):
            return _invalid(400, ["request body must be a JSON object"])
        try:
            parsed = parse_inject_request(
                body,
                max_recipients=self._config.max_recipients,
                max_message_size=self._config.max_message_size,
            )
        except InvalidRequest as invalid:
            return _invalid(422, invalid.reasons)
        return await self._inject(parsed, request)

    async def _inject(self, parsed: InjectRequest, request: web.Request) -> web.Response:
        received_at = datetime.now(UTC)
        transaction_id = uuid.uuid4().hex
        events: list[MessageAccepted] = []
        failed: list[str] = []
        errors: list[str] = []
        temporary: list[str] = []
        meta = self._connection_meta(request)
        for recipient in parsed.recipients:
            try:
                address = str(EnvelopeAddress.parse(recipient.email))
                message_id = new_message_id()
                content = build_message(
                    parsed.content,
                    recipient,
                    parsed.substitutions,
                    now=received_at,
                    message_id=message_id,
                    hostname=self._config.hostname,
                    max_size=self._config.max_message_size,
                )
                reception = Reception(
                    PROTOCOL, parsed.envelope_sender, content, received_at, transaction_id, meta
                )
                extra = [{"extra": dict(recipient.metadata)}] if recipient.metadata else [{}]
                events += accepted_messages(reception, [address], [message_id], extra)
            except (EnvelopeAddressError, MessageBuildError, ValueError) as error:
                metrics.MESSAGES_REJECTED.labels(PROTOCOL, "bad_recipient").inc()
                failed.append(recipient.email)
                errors.append(f"{recipient.email}: {error}")
        # http_message_generated before anything is accepted; as in KumoMTA, a recipient
        # whose message the handler refuses (kumo.reject, or a policy failure) fails alone.
        received = await self._reception.receive(PROTOCOL, events)
        events = []
        for result in received:
            if isinstance(result, Refused):
                failure = result.failure is not None
                metrics.MESSAGES_REJECTED.labels(
                    PROTOCOL, "policy_failed" if failure else "policy_rejected"
                ).inc()
                if failure:
                    log.warning(
                        "injection refused: the policy failed",
                        extra={"recipient": result.recipient, "error": result.failure},
                    )
                failed.append(result.recipient)
                errors.append(f"{result.recipient}: {result.reply}")
                if 400 <= result.response.code < 500:
                    temporary.append(result.recipient)
            else:
                events.append(result)
        if events:
            try:
                await self._acceptor.accept(events)
            except AcceptanceFailed as error:
                metrics.MESSAGES_REJECTED.labels(PROTOCOL, "kafka_unavailable").inc(len(events))
                log.warning(
                    "injection not accepted: Kafka did not commit", extra={"error": str(error)}
                )
                return _json(503, {"errors": ["temporarily unable to accept messages, retry"]})
            metrics.note_received(PROTOCOL, len(events))
        return _json(
            503 if temporary and not events else 200,
            {
                "success_count": len(events),
                "fail_count": len(failed),
                "failed_recipients": failed,
                "errors": errors,
                "temporarily_failed_recipients": temporary,
            },
        )

    def _connection_meta(self, request: web.Request) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "received_from": request.remote or "",
            "hostname": self._config.hostname,
            "http_auth": "bearer" if self._config.tokens_required else "loopback",
        }
        transport = request.transport
        sockname = transport.get_extra_info("sockname") if transport is not None else None
        if sockname:
            host, port = str(sockname[0]), int(sockname[1])
            meta["received_via"] = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return meta


class InjectListener:
    """The HTTP listener of the injection API."""

    def __init__(self, api: InjectApi) -> None:
        self._api = api
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self._api.application(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server  # aiohttp exposes the bound sockets only here
        sockets = getattr(server, "sockets", None) or []
        self._port = int(sockets[0].getsockname()[1]) if sockets else port
        log.info("injection API listening", extra={"host": host, "port": self._port})

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the injection API is not started")
        return self._port

    async def stop(self) -> None:
        """Stop listening; requests in progress finish (aiohttp's shutdown waits for them)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
