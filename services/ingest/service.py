"""The ingest service: SMTP, the HTTP injection API and the `submit` consumer, one process.

Ready (/readyz) once SMTP and HTTP listen and the producer is connected; the `submit` consumer's
group membership is shown by /readyz as detail ("waiting") and does not hold readiness back.
All three split mail per recipient. SMTP and HTTP write the MessageAccepted events of each
reception atomically (acceptor.py: one record batch, or a Kafka transaction for a reception too
large for one) before answering 250/200; the submit consumer writes them in a Kafka transaction
with the consumed offsets (submit_loop.py), exactly once. Readers of `accepted` must use
read_committed. On SIGTERM: the submit consumer commits the batch in progress and stops, the
SMTP listener stops accepting connections and lets transactions in DATA finish, the HTTP
listener finishes its requests, then the queued writes complete and the producers close.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from ..core.kafka.topics import TopicCatalog, TopicRole
from ..core.policy import configured_policy
from ..core.runtime.service import ServiceMain, ServiceRuntime, ServiceSpec
from ..core.runtime.settings import IngestSettings, Settings, SettingsError
from .acceptor import AtomicAcceptor
from .inject_api import InjectApi, InjectApiConfig, InjectListener, TokensRequired, require_tokens
from .reception import ReceptionPolicy
from .smtp_server import SmtpListener, SmtpPolicy
from .smtp_users import SmtpUsers, UsersFileError
from .submissions import AcceptedPartitions, SubmissionConverter
from .submit_loop import SubmitLoop

log = logging.getLogger(__name__)

SERVICE_NAME = "ingest"
SUBMIT_GROUP = "ingest-submit"
# The submit loop's producer: the instance's transactional id and this (submit_transactional_id).
SUBMIT_TRANSACTIONAL_SUFFIX = "-submit"
# Share of the shutdown grace period SMTP transactions in DATA get to finish.
_SMTP_DRAIN_SHARE = 0.6


@dataclass(frozen=True)
class IngestEndpoints:
    """The ports actually bound (settings may say 0: any free port)."""

    smtp_port: int
    http_port: int


def api_tokens(ingest: IngestSettings) -> tuple[str, ...]:
    """The configured bearer tokens: the setting's, then the file's (one a line, # comments)."""
    tokens = list(ingest.api_tokens)
    if ingest.api_tokens_file is not None:
        try:
            text = ingest.api_tokens_file.read_text(encoding="utf-8")
        except OSError as error:
            raise SettingsError(
                f"{ingest.api_tokens_file}: cannot read the API tokens file: {error.strerror}"
            ) from error
        tokens += [
            line.strip()
            for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
    return tuple(tokens)


def tls_context(ingest: IngestSettings) -> ssl.SSLContext | None:
    if ingest.tls_cert is None or ingest.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(ingest.tls_cert, ingest.tls_key)
    return context


def transactional_id(settings: Settings, topics: TopicCatalog) -> str:
    """Stable per instance, so a restarted instance fences its predecessor and the broker
    aborts the transaction it left open (rather than readers waiting for it to time out)."""
    if settings.ingest.transactional_id:
        return settings.ingest.transactional_id
    instance = settings.runtime.kafka_group_instance_id or socket.gethostname()
    return topics.transactional_id(SERVICE_NAME, instance)


def submit_transactional_id(settings: Settings, topics: TopicCatalog) -> str:
    """The submit loop's: stable per instance like `transactional_id`, and distinct from it, so
    that neither of the instance's two transactional producers fences the other."""
    return transactional_id(settings, topics) + SUBMIT_TRANSACTIONAL_SUFFIX


def ingest_main(*, started: Callable[[IngestEndpoints], None] | None = None) -> ServiceMain:
    """The service's main; `started` learns the bound ports (tests)."""

    async def main(runtime: ServiceRuntime) -> None:
        settings, topics = runtime.settings, runtime.topics
        ingest = settings.ingest
        bootstrap = settings.runtime.kafka_bootstrap
        client_id = runtime.client_id
        hostname = ingest.smtp_hostname or socket.getfqdn()
        try:
            users = SmtpUsers.load(ingest.smtp_users_file) if ingest.smtp_users_file else None
            tokens = api_tokens(ingest)
            tokens_required = require_tokens(ingest.http_bind, tokens)
        except (UsersFileError, TokensRequired) as error:
            raise SettingsError(str(error)) from error
        # The policy's reception events run here, before the client gets its answer.
        policy = configured_policy(
            settings.routing.policy_path, settings.routing.policy_deadline_seconds
        )
        log.info("policy loaded", extra={"policy": policy.name, "policy_hash": policy.content_hash})
        reception = ReceptionPolicy(policy, ingest.max_message_size, ingest.policy_queue_seconds)
        smtp_policy = SmtpPolicy(
            hostname=hostname,
            relay_networks=ingest.relay_networks,
            max_message_size=ingest.max_message_size,
            max_recipients=ingest.max_recipients,
            max_connections=ingest.max_connections,
            command_timeout=ingest.smtp_command_timeout_seconds,
            users=users or SmtpUsers({}),
            tls_context=tls_context(ingest),
            invalid_line_endings=ingest.smtp_invalid_line_endings,
        )
        api_config = InjectApiConfig(
            hostname=hostname,
            max_recipients=ingest.max_recipients,
            max_message_size=ingest.max_message_size,
            max_request_bytes=ingest.http_max_request_bytes,
            tokens=tokens,
            tokens_required=tokens_required,
        )
        acceptor = AtomicAcceptor(
            bootstrap,
            topic=topics.accepted.name,
            transactional_id=transactional_id(settings, topics),
            client_id=client_id,
            ack_timeout=ingest.kafka_ack_timeout_seconds,
        )
        await acceptor.start()
        try:
            smtp = SmtpListener(smtp_policy, acceptor, reception)
            http = InjectListener(InjectApi(api_config, acceptor, reception))
            try:
                await smtp.start(ingest.smtp_bind, ingest.smtp_port)
                await http.start(ingest.http_bind, ingest.http_port)

                def converter_for(partitions: AcceptedPartitions) -> SubmissionConverter:
                    return SubmissionConverter(
                        topics=topics,
                        partitions=partitions,
                        max_recipients=ingest.max_recipients,
                        max_message_size=ingest.max_message_size,
                        hostname=hostname,
                        service=SERVICE_NAME,
                        reception=reception,
                    )

                submit = SubmitLoop(
                    bootstrap=bootstrap,
                    topics=topics,
                    group=runtime.group_id(SUBMIT_GROUP),
                    group_instance_id=settings.runtime.kafka_group_instance_id,
                    transactional_id=submit_transactional_id(settings, topics),
                    client_id=client_id,
                    max_records=ingest.submit_max_batch_records,
                    converter_for=converter_for,
                    stop=runtime.shutdown_requested,
                    offload=reception.run_batch,
                )
                # Ready once SMTP and HTTP accept mail with the producer connected: that is
                # the traffic the probe routes. The submit consumer may wait for its group
                # (up to a session timeout after a kill -9 without static membership) or be
                # restarting after a failed transaction; its records wait in Kafka meanwhile,
                # so /readyz lists it without failing.
                runtime.health.add_detail_check("submit-consumer", submit.ready)
                runtime.health.set_ready(True)
                if started is not None:
                    started(IngestEndpoints(smtp.port, http.port))
                await submit.run()
            finally:
                grace = settings.runtime.shutdown_grace_seconds * _SMTP_DRAIN_SHARE
                await smtp.stop(grace)
                await http.stop()
        finally:
            await acceptor.stop()
            reception.close()

    return main


SERVICE = ServiceSpec(
    name=SERVICE_NAME,
    main=ingest_main(),
    groups={SUBMIT_GROUP: (TopicRole.SUBMIT,)},
    produces=(TopicRole.ACCEPTED, TopicRole.DEAD_LETTER),
    # aiosmtpd logs every SMTP command at INFO: ~5 lines a message and ~10% of ingest's CPU
    # under load (profiled). Our own records say what was accepted or refused.
    quiet_loggers=("mail.log",),
)
