"""The JSON log hook forwarder against a real broker and a real HTTP receiver on loopback: each
log record is POSTed in KumoMTA's JSON shape, a failed POST is retried, and only what was
POSTed is committed, so a restarted forwarder resumes exactly there (at-least-once)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError

from relaystream.core.domain.log_hook import LogHookDeclaration, LogHookKind
from relaystream.core.domain.log_record import LogRecord, RecordType
from relaystream.core.domain.smtp_reply import SmtpResponse
from relaystream.core.events.codec import encode
from relaystream.core.kafka.admin import ensure_topics
from relaystream.core.kafka.producer import EventProducer
from relaystream.core.kafka.topics import TopicCatalog, TopicSettings, declare_topics
from relaystream.core.log_hooks.forwarder import (
    JsonHookForwarder,
    RetryDelays,
    hook_group_id,
)

FAST_RETRY = RetryDelays(first_s=0.05, longest_s=0.2)
WITHIN_S = 60.0


@dataclass
class Receiver:
    """A webhook endpoint: records each JSON body; answers 500 to the first `failures` POSTs."""

    failures: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    content_types: set[str] = field(default_factory=set)

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        self.content_types.add(request.content_type)
        if self.failures > 0:
            self.failures -= 1
            return web.Response(status=500, text="try again")
        self.bodies.append(await request.json())
        return web.Response(text="ok")

    @property
    def ids(self) -> list[str]:
        return [body["id"] for body in self.bodies]


@asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/log", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/log"
    finally:
        await runner.cleanup()


def log_record(message_id: str) -> LogRecord:
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    return LogRecord(
        type=RecordType.DELIVERY,
        id=message_id,
        sender="sender@example.org",
        recipients=("rcpt@example.com",),
        queue="example.com",
        response=SmtpResponse.parse("250 2.0.0 delivered"),
        timestamp=now,
        created=now,
        site="mx.example.com",
    )


async def publish(bootstrap: str, topics: TopicCatalog, ids: list[str]) -> None:
    async with EventProducer(bootstrap, client_id="test-log-hooks") as producer:
        for message_id in ids:
            record = log_record(message_id)
            await producer.send(
                topics.log.name, encode("LogRecord", record.to_avro()), key=record.id
            )


async def until(condition: Callable[[], Awaitable[bool] | bool], what: str) -> None:
    deadline = time.monotonic() + WITHIN_S
    while True:
        outcome = condition()
        if outcome if isinstance(outcome, bool) else await outcome:
            return
        assert time.monotonic() < deadline, f"not within {WITHIN_S} s: {what}"
        await asyncio.sleep(0.05)


@asynccontextmanager
async def forwarding(forwarder: JsonHookForwarder) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(forwarder.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, WITHIN_S)


async def test_records_are_posted_retried_and_committed_only_once_posted(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topics = declare_topics(TopicSettings.local(topic_prefix))
    await ensure_topics(kafka_bootstrap, [topics.log])
    receiver = Receiver()
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    async with receiving(receiver) as url:
        hook = LogHookDeclaration(LogHookKind.JSON, "webhook", url=url)

        async def pinned() -> bool:
            try:
                offsets = await admin.list_consumer_group_offsets(hook_group_id(topics, hook))
            except GroupCoordinatorNotAvailableError:  # a fresh broker's offsets topic
                return False
            return len(offsets) == TopicSettings.local().partitions

        def forwarder() -> JsonHookForwarder:
            return JsonHookForwarder(hook, kafka_bootstrap, topics, FAST_RETRY)

        # Logged before the hook ever ran: not forwarded (KumoMTA hooks what is logged after).
        await publish(kafka_bootstrap, topics, ["before"])
        # A first run stops before anything is logged; it still pinned where the hook starts.
        async with forwarding(forwarder()):
            await until(pinned, "the hook's start is committed")
        await publish(kafka_bootstrap, topics, ["m1", "m2", "m3"])

        # The receiver fails twice: the POST is retried until it succeeds.
        receiver.failures = 2
        first = forwarder()
        async with forwarding(first):
            await until(lambda: len(receiver.bodies) == 3, "three records POSTed")
        assert sorted(receiver.ids) == ["m1", "m2", "m3"]
        assert receiver.attempts == 5
        assert first.forwarded == 3
        assert receiver.content_types == {"application/json"}
        body = receiver.bodies[0]
        assert body["type"] == "Delivery"
        assert body["recipient"] == "rcpt@example.com"
        assert body["response"]["code"] == 250

        # Stopped while a record cannot be POSTed: it is not committed, so it comes again.
        receiver.failures = 10**6
        await publish(kafka_bootstrap, topics, ["m4"])
        attempts = receiver.attempts
        async with forwarding(forwarder()):
            await until(lambda: receiver.attempts > attempts + 1, "m4 refused twice")
        receiver.failures = 0
        async with forwarding(forwarder()):
            await until(lambda: len(receiver.bodies) == 4, "m4 POSTed after the restart")
        # Exactly the records after the pinned start, each once: nothing committed came again.
        assert sorted(receiver.ids) == ["m1", "m2", "m3", "m4"]
    await admin.close()
