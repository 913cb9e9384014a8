"""Accepted mail is never lost, whatever crashes: SIGKILL a service, restart it, check.

A dedicated pipeline, so that killing its services cannot disturb the other tests.
"""

from __future__ import annotations

import asyncio
import smtplib
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from dnsmasq import DnsServer
from harness import (
    MAIN_SINK,
    LogWatcher,
    Pipeline,
    Sinks,
    dedicated_pipeline,
    has_final,
    types_of,
)


@pytest.fixture(scope="module")
async def crash_pipeline(
    kafka_bootstrap: str,
    dns_server: DnsServer,
    sinks: Sinks,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Pipeline, LogWatcher]]:
    async with dedicated_pipeline(
        kafka_bootstrap, dns_server, sinks, tmp_path_factory.mktemp("crash")
    ) as running:
        yield running


def send_each(pipeline: Pipeline, recipients: list[str]) -> None:
    """One SMTP transaction per recipient, so each is accepted (250) on its own."""
    with smtplib.SMTP("127.0.0.1", pipeline.smtp_port, timeout=60) as client:
        for recipient in recipients:
            client.sendmail("sender@example.org", [recipient], f"Subject: {recipient}\r\n\r\nx\r\n")


async def test_scheduling_killed_keeps_every_waiting_message_and_its_due_time(
    crash_pipeline: tuple[Pipeline, LogWatcher], sinks: Sinks
) -> None:
    pipeline, logs = crash_pipeline
    sink = sinks.by_host[MAIN_SINK]
    # hold.test retries after 20s: each message fails once, then waits in its queue.
    recipients = [f"hold-{i}-{uuid.uuid4().hex[:6]}@hold.test" for i in range(5)]
    for recipient in recipients:
        sink.answer_rcpt(recipient, "451 4.3.0 later")
    await asyncio.to_thread(send_each, pipeline, recipients)
    failures = {}
    for recipient in recipients:
        records = await logs.wait_for(lambda rs: "TransientFailure" in types_of(rs), recipient)
        failures[recipient] = next(r for r in records if r["type"] == "TransientFailure")

    pipeline.kill("scheduling")
    for recipient in recipients:
        sink.accept_rcpt(recipient)
    await pipeline.restart("scheduling")

    for recipient in recipients:
        records = await logs.wait_for(has_final, recipient, within=120)
        assert types_of(records) == ["Reception", "TransientFailure", "Delivery"], records
        delivery = records[-1]
        # Not released early by the restart: the 20s backoff (jitter 1s) still held.
        assert delivery["timestamp"] - failures[recipient]["timestamp"] >= 18
        assert sinks.received_by(recipient) == [MAIN_SINK]


async def test_routing_killed_mid_stream_loses_nothing(
    crash_pipeline: tuple[Pipeline, LogWatcher], sinks: Sinks
) -> None:
    pipeline, logs = crash_pipeline
    recipients = [f"burst-{i}-{uuid.uuid4().hex[:6]}@plain.test" for i in range(40)]
    sending = asyncio.ensure_future(asyncio.to_thread(send_each, pipeline, recipients))
    # Kill routing while the burst is being accepted and routed: right after its first record.
    await logs.wait_for(lambda rs: bool(rs), recipients[0], within=120)
    pipeline.kill("routing")
    await sending
    await pipeline.restart("routing")

    for recipient in recipients:
        await logs.wait_for(has_final, recipient, within=180)
    for recipient in recipients:
        kinds = Counter(types_of(logs.for_recipient(recipient)))
        assert kinds["Delivery"] == 1, (recipient, kinds)
        assert sinks.received_by(recipient) == [MAIN_SINK]
