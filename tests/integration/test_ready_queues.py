"""Delivery's ready queues through the admin API (issues 19 and 20): a real delivery process
publishes its connection pools on the `ready-queues` topic and applies suspend-ready-q from
the `admin` topic; the scheduling service (in-process, with its admin API) answers
`ready-q-states` and `inspect-ready-q` from that topic and retries what a suspended ready
queue turned away. The sink answers DATA slowly, so a connection_limit of 1 binds."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
from delivery_sinks import SmtpSink, start_sink
from scheduling_support import TopicWatcher, create_topics, now_ms, queue_message
from service_process import ServiceProcess

from relaystream.core.domain.queue_config import QueueConfig
from relaystream.core.domain.queue_name import QueueName
from relaystream.core.kafka.producer import EventProducer
from relaystream.core.runtime.settings import RuntimeSettings, SchedulingSettings, Settings
from relaystream.scheduling.admin_api import openapi_text, start_admin_api
from relaystream.scheduling.scheduler import Scheduler
from relaystream_devkit.broker import free_loopback_ports

OPENAPI = json.loads(openapi_text())


def conforms(body: Any, schema_name: str) -> None:
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": OPENAPI["components"]}
    jsonschema.Draft202012Validator(schema).validate(body)


def quick_retries(name: QueueName) -> QueueConfig:
    return QueueConfig(retry_interval=timedelta(seconds=1))


async def call(base: str, method: str, path: str, body: Any = None) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, base + path, json=body) as response,
    ):
        text = await response.text()
        assert response.status == 200, (method, path, response.status, text)
        return json.loads(text) if response.content_type == "application/json" else text


async def relaystream(*args: str) -> str:
    command = Path(sys.executable).parent / "relaystream"
    done = await asyncio.to_thread(
        subprocess.run, [str(command), *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def eventually(check: Any, within: float = 30.0) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await check()
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.1)


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    slow = await start_sink(data_delay=2.0)
    yield slow
    await slow.close()


async def test_ready_queue_states_and_suspension_come_from_delivery(
    kafka_bootstrap: str, topic_prefix: str, sink: SmtpSink, tmp_path: Path
) -> None:
    topics = await create_topics(kafka_bootstrap, topic_prefix)
    delivery = ServiceProcess(
        "delivery",
        bootstrap=kafka_bootstrap,
        prefix=topic_prefix,
        log_path=tmp_path / "delivery.log",
        settings={
            "RELAYSTREAM_DELIVERY_ALLOW_LOOPBACK": "true",
            "RELAYSTREAM_DELIVERY_TLS_MODE": "Disabled",
            "RELAYSTREAM_DELIVERY_CONNECTION_LIMIT": "1",
            "RELAYSTREAM_DELIVERY_SMTP_PORT": str(sink.port),
        },
    )
    settings = Settings(
        runtime=replace(
            RuntimeSettings(), kafka_bootstrap=kafka_bootstrap, topic_prefix=topic_prefix
        ),
        scheduling=replace(SchedulingSettings(), tick_interval_seconds=0.2),
    )
    scheduler = Scheduler(settings, policy_config=quick_retries)
    stop = asyncio.Event()
    running = asyncio.create_task(scheduler.run(stop))
    for _ in range(300):
        if scheduler.ready or running.done():
            break
        await asyncio.sleep(0.1)
    assert scheduler.ready, running.exception() if running.done() else "not ready after 30 s"
    (port,) = free_loopback_ports(1)
    base = f"http://127.0.0.1:{port}/api/admin"
    api = await start_admin_api(scheduler, settings, host="127.0.0.1", port=port)
    log = TopicWatcher(kafka_bootstrap, topics.log, "LogRecord")
    await log.start()
    queue = "t@[127.0.0.1]"
    try:
        delivery.start()
        await delivery.wait_ready()
        async with EventProducer(kafka_bootstrap, client_id="ready-q-test") as producer:
            for n in range(2):
                await queue_message(producer, topics, f"m{n}", queue=queue, due_at=now_ms())

            # One connection held by the slow sink, the second message waiting for it.
            async def limited() -> dict[str, Any] | None:
                states = await call(base, "GET", "/ready-q-states/v1")
                found = states["states_by_ready_queue"]
                return states if any("connection_limited" in s for s in found.values()) else None

            states = await eventually(limited)
            assert states, f"no connection_limited ready queue; sink: {sink.stats}"
            conforms(states, "ReadyQueueStateResponse")
            (name,) = states["states_by_ready_queue"]
            assert name == "unspecified->127.0.0.1@smtp_client"
            inspected = await call(base, "GET", f"/inspect-ready-q/v1?queue_name={name}")
            conforms(inspected, "InspectReadyQV1Response")
            assert inspected["state"]["connection_count"] == 1
            assert inspected["state"]["ready_count"] == 2
            assert inspected["path_config"]["connection_limit"] == 1

            await sink.wait_for_active_connections(1)

            async def both_sent() -> bool:
                return len(sink.messages) == 2

            assert await eventually(both_sent)
            connections = sink.stats.connections_total

            # Suspended (as an operator does, with the CLI): the next message is turned away
            # without a connection.
            endpoint = ("--endpoint", base.removesuffix("/api/admin"))
            shown = await relaystream("inspect-ready-q", name, *endpoint)
            assert name in shown and "connection_count" in shown, shown
            answer = await relaystream("suspend-ready-q", name, "--reason", "blocked", *endpoint)
            listed = await call(base, "GET", "/suspend-ready-q/v1")
            assert answer.strip() == f"suspended {name}: id {listed[0]['id']}"
            created = listed[0]
            assert [(e["id"], e["name"]) for e in listed] == [(created["id"], name)]
            conforms(listed[0], "SuspendReadyQueueV1ListEntry")

            async def delivery_applied() -> bool:
                state = scheduler.ready_queues.current(now_ms()).get(name)
                return state is not None and "suspended" in state["states"]

            assert await eventually(delivery_applied)
            await queue_message(producer, topics, "held", queue=queue, due_at=now_ms())

            async def turned_away() -> list[Any]:
                return [
                    r
                    for r in log.records
                    if r.key == "held" and r.value["type"] == "TransientFailure"
                ]

            (failure, *_) = await eventually(turned_away)
            assert "ready queue is suspended: blocked" in failure.value["response"]["content"]
            assert failure.value["response"]["code"] == 451
            assert sink.stats.connections_total == connections
            assert len(sink.messages) == 2

            # Lifted: scheduling's retry delivers it.
            await call(base, "DELETE", "/suspend-ready-q/v1", {"id": created["id"]})

            async def delivered() -> bool:
                return any(m.recipients == ["held@[127.0.0.1]"] for m in sink.messages)

            assert await eventually(delivered), [m.recipients for m in sink.messages]
    finally:
        await log.stop()
        await api.cleanup()
        stop.set()
        await running
        delivery.close()
