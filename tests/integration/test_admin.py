"""Operator rules against a real broker and the real scheduling service (in-process), driven
through its admin HTTP API: suspend, bounce, rebind, KumoMTA's other admin routes (bodies
checked against the published OpenAPI document), and auth (bearer, Basic, trusted hosts)."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
from kumo_log_shape import assert_kumo_shape
from scheduling_support import (
    Seen,
    TopicWatcher,
    create_topics,
    now_ms,
    queue_message,
    set_override,
)

from relaystream.core.domain.log_record import LogRecord, to_kumo_json
from relaystream.core.kafka.producer import EventProducer
from relaystream.core.kafka.topics import TopicCatalog
from relaystream.core.runtime.settings import RuntimeSettings, SchedulingSettings, Settings
from relaystream.scheduling.admin_api import openapi_text, start_admin_api
from relaystream.scheduling.config_resolver import default_queue_config
from relaystream.scheduling.scheduler import Scheduler

TOKEN = "s3cret-admin-token"
BASIC_USER = "ops:s3cret-password"
OPENAPI = json.loads(openapi_text())


def conforms(body: Any, schema_name: str) -> None:
    """`body` is what the OpenAPI document says `schema_name` is (jsonschema raises if not)."""
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": OPENAPI["components"]}
    jsonschema.Draft202012Validator(schema).validate(body)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Running:
    scheduler: Scheduler
    base: str
    topics: TopicCatalog
    producer: EventProducer
    log: TopicWatcher
    attempts: TopicWatcher
    queued: TopicWatcher

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = TOKEN,
        status: int = 200,
    ) -> Any:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.base + path, json=body, headers=headers) as response,
        ):
            text = await response.text()
            assert response.status == status, (response.status, text)
            return json.loads(text) if response.content_type == "application/json" else text


@pytest.fixture
async def running(kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[Running]:
    topics = await create_topics(kafka_bootstrap, topic_prefix)
    settings = Settings(
        runtime=replace(
            RuntimeSettings(), kafka_bootstrap=kafka_bootstrap, topic_prefix=topic_prefix
        ),
        # No trusted hosts: every request here authenticates, as a remote one would.
        scheduling=replace(
            SchedulingSettings(),
            tick_interval_seconds=0.2,
            admin_api_tokens=(TOKEN,),
            admin_api_basic_users=(BASIC_USER,),
            admin_api_trusted_hosts=(),
        ),
    )
    scheduler = Scheduler(settings, policy_config=default_queue_config)
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    for _ in range(300):
        if scheduler.ready or task.done():
            break
        await asyncio.sleep(0.1)
    assert scheduler.ready, task.exception() if task.done() else "not ready after 30 s"
    port = free_port()
    api = await start_admin_api(scheduler, settings, host="127.0.0.1", port=port)
    watchers = [
        TopicWatcher(kafka_bootstrap, topics.log, "LogRecord"),
        TopicWatcher(kafka_bootstrap, topics.attempts, "DeliveryRequest"),
        TopicWatcher(kafka_bootstrap, topics.queued, "QueuedMessage"),
    ]
    for watcher in watchers:
        await watcher.start()
    async with EventProducer(kafka_bootstrap, client_id="admin-test") as producer:
        yield Running(scheduler, f"http://127.0.0.1:{port}", topics, producer, *watchers)
    for watcher in watchers:
        await watcher.stop()
    await api.cleanup()
    stop.set()
    await asyncio.wait_for(task, 30)


def of_type(records: list[Seen], kind: str) -> list[Seen]:
    return [r for r in records if r.value is not None and r.value["type"] == kind]


async def eventually(check: Any, within: float = 15.0) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = check()
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.1)


async def test_suspend_holds_a_queue_until_cancelled(running: Running) -> None:
    queue = "held.example"
    await set_override(running.producer, running.topics, queue, {"retry_interval": "1s"})
    created = await running.call(
        "POST", "/api/admin/suspend/v1", {"domain": queue, "reason": "maintenance"}
    )
    listed = await eventually(lambda: running.scheduler.rules.get(created["id"]))
    assert listed is not None
    await queue_message(running.producer, running.topics, "s1", queue=queue, due_at=now_ms())

    failures = await eventually(lambda: of_type(running.log.records, "TransientFailure"))
    assert failures, "no TransientFailure for a due message of a suspended queue"
    response = failures[0].value["response"]
    assert response["code"] == 451
    assert response["enhanced_code"] == {"class": 4, "subject": 4, "detail": 4}
    assert response["content"] == "KumoMTA internal: scheduled queue is suspended: maintenance"
    # An attempt counted: the requeued record has attempts 1 and a later due time.
    requeued = await eventually(
        lambda: [r for r in running.queued.records if r.value and r.value["attempts"] >= 1]
    )
    assert requeued
    assert running.attempts.records == [], "a suspended queue released a message"
    rules = await running.call("GET", "/api/admin/suspend/v1")
    assert [r["id"] for r in rules] == [created["id"]]
    assert rules[0]["domain"] == queue and rules[0]["reason"] == "maintenance"

    await running.call("DELETE", "/api/admin/suspend/v1", {"id": created["id"]})
    released = await running.attempts.wait_for(1, within=15, key="s1")
    assert released, "not released after the suspension was cancelled"
    assert released[0].value is not None and released[0].value["attempt"] >= 1


async def test_suspension_expiry_releases_the_queue(running: Running) -> None:
    queue = "brief.example"
    await set_override(running.producer, running.topics, queue, {"retry_interval": "1s"})
    await running.call(
        "POST", "/api/admin/suspend/v1", {"queue_names": [queue], "reason": "x", "duration": "3s"}
    )
    await asyncio.sleep(0.5)
    await queue_message(running.producer, running.topics, "e1", queue=queue, due_at=now_ms())
    assert await eventually(lambda: of_type(running.log.records, "TransientFailure"))
    released = await running.attempts.wait_for(1, within=20, key="e1")
    assert released, "not released after the suspension expired"


async def test_bounce_removes_queued_messages_and_arrivals(running: Running) -> None:
    queue = "gone.example"
    later = now_ms() + 3_600_000
    for message_id in ("b1", "b2"):
        await queue_message(running.producer, running.topics, message_id, queue=queue, due_at=later)
    await queue_message(
        running.producer, running.topics, "keep", queue="kept.example", due_at=later
    )
    await eventually(lambda: running.scheduler.messages.message_count == 3)
    created = await running.call(
        "POST", "/api/admin/bounce/v1", {"domain": queue, "reason": "bad list"}
    )
    bounces = await eventually(lambda: len(of_type(running.log.records, "AdminBounce")) >= 2)
    assert bounces
    await queue_message(running.producer, running.topics, "b3", queue=queue, due_at=later)
    assert await eventually(lambda: len(of_type(running.log.records, "AdminBounce")) >= 3)

    bounced = of_type(running.log.records, "AdminBounce")
    assert sorted(r.key for r in bounced) == ["b1", "b2", "b3"]
    for record in bounced:
        assert record.value is not None
        response = record.value["response"]
        assert (response["code"], response["enhanced_code"]) == (
            551,
            {"class": 5, "subject": 7, "detail": 1},
        )
        assert response["content"] == "Administrator bounced with reason: bad list"
        shown = to_kumo_json(LogRecord.from_avro(record.value))
        assert_kumo_shape(shown)
        assert shown["bounce_classification"] == "PolicyRelated"
    tombstones = await eventually(
        lambda: sorted(r.key for r in running.queued.records if r.value is None)
    )
    assert tombstones == ["b1", "b2", "b3"]
    assert running.scheduler.messages.entry("keep") is not None
    listed = await running.call("GET", "/api/admin/bounce/v1")
    assert [r["id"] for r in listed] == [created["id"]]
    # The bulk bounce of queued mail and the arrival after it, counted per queue.
    assert listed[0]["bounced"] == {queue: 3} and listed[0]["total_bounced"] == 3
    assert listed[0]["pending"] == 0
    conforms(listed[0], "BounceV1ListEntry")
    assert running.attempts.records == []


async def test_rebind_moves_messages_to_the_new_queue_due_now(running: Running) -> None:
    queue = "old.example"
    later = now_ms() + 3_600_000
    await queue_message(running.producer, running.topics, "r1", queue=queue, due_at=later)
    await eventually(lambda: running.scheduler.messages.entry("r1") is not None)
    await running.call(
        "POST",
        "/api/admin/rebind/v1",
        {"domain": queue, "reason": "new route", "data": {"routing_domain": "relay.example"}},
    )
    # queue_message's meta names tenant "acme": the recomputed name keeps it.
    new_queue = "acme@old.example!relay.example"
    released = await running.attempts.wait_for(1, within=15, key="r1")
    assert released and released[0].value is not None
    assert released[0].value["queue"] == new_queue
    assert json.loads(released[0].value["meta"]["routing_domain"]) == "relay.example"

    rebinds = of_type(running.log.records, "AdminRebind")
    assert [r.key for r in rebinds] == ["r1"]
    assert rebinds[0].value is not None
    assert rebinds[0].value["response"]["content"] == (
        f"Rebound from {queue} to {new_queue}: new route"
    )
    writes = [r for r in running.queued.records if r.key == "r1"]
    # original, the rebound copy (due now), then the old copy's tombstone.
    assert writes[1].value is not None and writes[1].value["queue"] == new_queue
    assert writes[1].value["due_at"].timestamp() * 1000 < later
    assert writes[2].value is None and writes[2].partition == writes[0].partition


async def test_admin_api_requires_the_bearer_token(running: Running) -> None:
    url = running.base + "/api/admin/suspend/v1"
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            assert response.status == 401
        async with session.get(url, headers={"Authorization": "Bearer wrong"}) as response:
            assert response.status == 401
        body = {"domain": "x.example", "reason": "r"}
        async with session.post(url, json=body) as response:
            assert response.status == 401
        async with session.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as response:
            assert response.status == 200
            assert await response.json() == []
        for pair, status in ((BASIC_USER, 200), ("ops:guess", 401)):
            header = "Basic " + base64.b64encode(pair.encode()).decode()
            async with session.get(url, headers={"Authorization": header}) as response:
                assert response.status == status
    assert running.scheduler.rules.all() == []


async def test_inspect_queue_and_message(running: Running) -> None:
    queue = "look.example"
    later = now_ms() + 3_600_000
    await queue_message(running.producer, running.topics, "i1", queue=queue, due_at=later)
    await eventually(lambda: running.scheduler.messages.entry("i1") is not None)
    answer = await running.call(
        "GET", f"/api/admin/inspect-sched-q/v1?queue_name={queue}&want_body=true"
    )
    assert answer["queue_name"] == queue and answer["num_scheduled"] == 1
    assert answer["queue_config"]["retry_interval"] == 1200
    assert answer["messages"][0]["id"] == "i1"
    assert answer["messages"][0]["message"]["data"].startswith("Subject: i1")
    message = await running.call("GET", "/api/admin/inspect-message/v1?id=i1")
    assert message["message"]["recipient"] == "i1@look.example"
    assert message["message"]["num_attempts"] == 0


async def test_kumomta_admin_routes_answer_with_their_bodies(running: Running) -> None:
    queue = "shape.example"
    later = now_ms() + 3_600_000
    await queue_message(running.producer, running.topics, "k1", queue=queue, due_at=later)
    await eventually(lambda: running.scheduler.messages.entry("k1") is not None)
    suspended = await running.call(
        "POST", "/api/admin/suspend/v1", {"queue_names": [queue], "reason": "look"}
    )
    conforms(suspended, "SuspendV1Response")
    await eventually(lambda: running.scheduler.rules.get(suspended["id"]))
    conforms((await running.call("GET", "/api/admin/suspend/v1"))[0], "SuspendV1ListEntry")

    sched = await running.call("GET", f"/api/admin/inspect-sched-q/v1?queue_name={queue}")
    conforms(sched, "InspectQueueV1Response")
    assert sched["suspended"]["id"] == suspended["id"]
    # Ready queues are delivery's (test_ready_queues.py): none runs here.
    await running.call("GET", f"/api/admin/inspect-ready-q/v1?queue_name={queue}", status=404)
    states = await running.call("GET", "/api/admin/ready-q-states/v1")
    conforms(states, "ReadyQueueStateResponse")
    assert states == {"states_by_ready_queue": {}}
    path = await running.call("GET", "/api/admin/resolve-egress-path/v1?domain=[127.0.0.1]")
    conforms(path, "ResolveEgressPathV1Response")
    # A literal's site is its address, as delivery's pools name it.
    assert path["queue_name"] == "unspecified->127.0.0.1@smtp_client"
    conforms(await running.call("GET", "/api/machine-info"), "MachineInfoV1")
    assert await running.call("GET", "/api/check-liveness/v1") == "ready to schedule messages"

    # The scheduler's gauges, refreshed by its loop, under KumoMTA's names.
    for _ in range(100):
        metrics = await running.call("GET", "/metrics.json")
        if metrics.get("scheduled_count", {}).get("value", {}).get("queue", {}).get(queue):
            break
        await asyncio.sleep(0.1)
    assert metrics["scheduled_count"]["value"]["queue"][queue] == 1.0
    assert f'scheduled_count{{queue="{queue}"}} 1.0' in await running.call("GET", "/metrics")

    version = running.scheduler.configs.version
    assert await running.call("POST", "/api/admin/bump-config-epoch") == "bump successful"
    assert running.scheduler.configs.version == version + 1
    await running.call(
        "POST", "/api/admin/set_diagnostic_log_filter/v1", {"filter": "relaystream.x=debug"}
    )
    await running.call(
        "POST", "/api/admin/set_diagnostic_log_filter/v1", {"filter": "x=loud"}, status=400
    )
    assert await running.call("GET", "/api-docs/openapi.json") == OPENAPI

    # Refused, never accepted and ignored: unknown fields, options not implemented, routes
    # whose concept relaystream lacks.
    bounce = {"domain": queue, "reason": "r"}
    await running.call("POST", "/api/admin/bounce/v1", {**bounce, "colour": 1}, status=400)
    await running.call(
        "POST", "/api/admin/bounce/v1", {**bounce, "suppress_logging": True}, status=400
    )
    await running.call(
        "GET", f"/api/admin/inspect-sched-q/v1?queue_name={queue}&sort=due", status=400
    )
    await running.call(
        "POST", "/api/admin/suspend-ready-q/v1", {"name": "x", "queue_names": ["x"]}, status=400
    )
    assert await running.call("GET", "/api/admin/suspend-ready-q/v1") == []
    await running.call("POST", "/api/admin/xfer/v1", {"reason": "r"}, status=501)
    assert running.scheduler.messages.entry("k1") is not None
    assert [r.id for r in running.scheduler.rules.all()] == [suspended["id"]]


def relaystream(*args: str) -> list[dict[str, Any]]:
    command = Path(sys.executable).parent / "relaystream"
    done = subprocess.run(
        [str(command), *args], capture_output=True, text=True, timeout=120, check=True
    )
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


async def test_queues_command_reads_the_topics(running: Running, kafka_bootstrap: str) -> None:
    prefix = running.topics.queued.name.removesuffix("queued")
    later = now_ms() + 3_600_000
    for message_id in ("q1", "q2"):
        await queue_message(
            running.producer, running.topics, message_id, queue="a.example", due_at=later
        )
    await queue_message(running.producer, running.topics, "q3", queue="b.example", due_at=later + 5)
    await set_override(running.producer, running.topics, "b.example", {"retry_interval": "1m"})
    await running.call("POST", "/api/admin/suspend/v1", {"domain": "a.example", "reason": "hold"})
    await eventually(lambda: running.scheduler.messages.message_count == 3)
    target = ("--bootstrap", kafka_bootstrap, "--prefix", prefix)

    rows = await asyncio.to_thread(relaystream, "queues", "--json", *target)
    by_queue = {row["queue"]: row for row in rows}
    assert sorted(by_queue) == ["a.example", "b.example"]
    assert by_queue["a.example"]["count"] == 2
    assert by_queue["a.example"]["config_source"] == "policy"
    assert by_queue["a.example"]["suspended"]["reason"] == "hold"
    assert by_queue["b.example"]["config_source"] == "override:domain"
    assert by_queue["b.example"]["suspended"] is None

    messages = await asyncio.to_thread(
        relaystream, "queues", "show", "a.example", "--json", *target
    )
    assert sorted(m["id"] for m in messages) == ["q1", "q2"]
    assert messages[0]["recipient"].endswith("@a.example")
    assert messages[0]["attempts"] == 0 and messages[0]["last_response"] is None

    rules = await asyncio.to_thread(relaystream, "rules", "list", "--json", *target)
    assert [r["reason"] for r in rules] == ["hold"]


def relaystream_text(*args: str) -> subprocess.CompletedProcess[str]:
    command = Path(sys.executable).parent / "relaystream"
    return subprocess.run([str(command), *args], capture_output=True, text=True, timeout=120)


async def test_bulk_bounce_from_the_cli_follows_progress(
    running: Running, kafka_bootstrap: str
) -> None:
    prefix = running.topics.queued.name.removesuffix("queued")
    queue = "bulk.example"
    later = now_ms() + 3_600_000
    for n in range(3):
        await queue_message(running.producer, running.topics, f"m{n}", queue=queue, due_at=later)
    await eventually(lambda: running.scheduler.messages.message_count == 3)
    api = ("--endpoint", running.base, "--token", TOKEN)
    target = ("--bootstrap", kafka_bootstrap, "--prefix", prefix)

    done = await asyncio.to_thread(
        relaystream_text, "bounce", "--domain", queue, "--reason", "cleanup", "--wait",
        *api, *target,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "3 bounced, 0 pending" in done.stderr
    assert done.stdout.splitlines()[-2:] == ["QUEUE         BOUNCED", f"{queue}  3"]

    listed = await asyncio.to_thread(relaystream_text, "bounce-list", *api)
    header, row = listed.stdout.splitlines()
    assert header.split() == ["ID", "MATCH", "LEFT", "REASON", "BOUNCED", "PENDING"]
    assert row.split()[-3:] == ["cleanup", "3", "0"]
    refused = await asyncio.to_thread(relaystream_text, "bounce-list", "--endpoint", running.base)
    assert refused.returncode == 1 and "HTTP 401" in refused.stderr
