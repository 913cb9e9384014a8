"""Mail in by SMTP, HTTP and Kafka; out by SMTP to the right host, with KumoMTA's semantics.

One pipeline (four `relaystream run` processes) with tests/e2e/policies/pipeline.lua.template;
each test uses its own recipient addresses and waits for their log records.
"""

from __future__ import annotations

import asyncio
import itertools
import smtplib
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta

import aiohttp
import pytest
from harness import MAIN_SINK, MX_LIST_SINK, LogWatcher, Pipeline, Sinks, has_final, types_of

from relaystream.core.domain.retry import next_retry_delay


def unique(local: str, domain: str) -> str:
    return f"{local}-{uuid.uuid4().hex[:8]}@{domain}"


def send_smtp(pipeline: Pipeline, recipients: list[str], source: str = "127.0.0.1") -> None:
    with smtplib.SMTP(
        "127.0.0.1", pipeline.smtp_port, timeout=30, source_address=(source, 0)
    ) as client:
        client.sendmail(
            "sender@example.org",
            recipients,
            f"From: sender@example.org\r\nSubject: e2e\r\n\r\nbody of {recipients[0]}\r\n",
        )


async def send_smtp_async(pipeline: Pipeline, recipients: list[str]) -> None:
    await asyncio.to_thread(send_smtp, pipeline, recipients)


async def test_smtp_message_is_received_then_delivered(
    pipeline: Pipeline, logs: LogWatcher, sinks: Sinks
) -> None:
    recipient = unique("smtp", "plain.test")
    await send_smtp_async(pipeline, [recipient])
    records = await logs.wait_for(has_final, recipient)
    assert types_of(records) == ["Reception", "Delivery"]
    reception, delivery = records
    assert reception["queue"] == "plain.test"
    assert reception["reception_protocol"] == "ESMTP"
    assert delivery["peer_address"] == {"name": "mx.plain.test", "addr": MAIN_SINK}
    assert delivery["response"]["code"] == 250
    assert sinks.received_by(recipient) == [MAIN_SINK]


async def test_one_smtp_transaction_splits_into_one_message_per_recipient(
    pipeline: Pipeline, logs: LogWatcher, sinks: Sinks
) -> None:
    recipients = [unique("split", "plain.test"), unique("split", "literal.test")]
    await send_smtp_async(pipeline, recipients)
    for recipient in recipients:
        records = await logs.wait_for(has_final, recipient)
        assert types_of(records) == ["Reception", "Delivery"]
    ids = {logs.for_recipient(r)[0]["id"] for r in recipients}
    assert len(ids) == 2
    assert sinks.received_by(recipients[1]) == ["127.0.0.1"]


async def test_http_injection_is_delivered(
    pipeline: Pipeline, logs: LogWatcher, sinks: Sinks
) -> None:
    recipient = unique("http", "plain.test")
    request = {
        "envelope_sender": "sender@example.org",
        "recipients": [{"email": recipient}],
        "content": {
            "subject": "hello over HTTP",
            "text_body": "it works",
            "from": {"email": "sender@example.org", "name": "Sender"},
        },
    }
    url = f"http://127.0.0.1:{pipeline.http_port}/api/inject/v1"
    async with aiohttp.ClientSession() as http, http.post(url, json=request) as response:
        assert response.status == 200, await response.text()
        body = await response.json()
    assert body["success_count"] == 1
    assert body["fail_count"] == 0
    records = await logs.wait_for(has_final, recipient)
    assert types_of(records) == ["Reception", "Delivery"]
    assert records[0]["reception_protocol"] == "HTTP"
    assert sinks.received_by(recipient) == [MAIN_SINK]


async def test_queue_rewrite_joins_the_named_queue(
    pipeline: Pipeline, logs: LogWatcher, sinks: Sinks
) -> None:
    recipient = unique("rewrite", "rewrite.test")
    await send_smtp_async(pipeline, [recipient])
    records = await logs.wait_for(has_final, recipient)
    assert {r["queue"] for r in records} == {"my.smarthost.com"}
    assert records[-1]["type"] == "Delivery"
    assert sinks.received_by(recipient) == [MAIN_SINK]


async def test_routing_domain_keeps_tenant_and_campaign(
    pipeline: Pipeline, logs: LogWatcher
) -> None:
    recipient = unique("tenant", "tenant.test")
    await send_smtp_async(pipeline, [recipient])
    records = await logs.wait_for(has_final, recipient)
    assert {r["queue"] for r in records} == {"promo:acme@tenant.test!my.smarthost.com"}
    assert records[-1]["type"] == "Delivery"
    # The recipient is unchanged; only the destination came from the routing domain's MX.
    assert records[-1]["recipient"] == recipient
    assert records[-1]["peer_address"]["name"] == "mx.plain.test"


async def test_mx_list_is_tried_in_order_and_resolved_for_addresses_only(
    pipeline: Pipeline, logs: LogWatcher, sinks: Sinks
) -> None:
    recipient = unique("mxlist", "mxlist.test")
    await send_smtp_async(pipeline, [recipient])
    records = await logs.wait_for(has_final, recipient)
    delivery = records[-1]
    assert delivery["type"] == "Delivery"
    assert delivery["queue"] == "mxlist.test"
    # The first entry refuses connections; the second is smart.host.test's A record, not its MX.
    assert delivery["peer_address"] == {"name": "smart.host.test", "addr": MX_LIST_SINK}
    assert sinks.received_by(recipient) == [MX_LIST_SINK]


async def test_ipv4_literal_queue_is_delivered_without_dns(
    pipeline: Pipeline, logs: LogWatcher, sinks: Sinks
) -> None:
    recipient = unique("literal", "literal.test")
    await send_smtp_async(pipeline, [recipient])
    records = await logs.wait_for(has_final, recipient)
    assert records[-1]["type"] == "Delivery"
    assert records[-1]["queue"] == "[127.0.0.1]"
    assert sinks.received_by(recipient) == ["127.0.0.1"]


@pytest.mark.parametrize("domain", ["ipv6.test", "nonconforming.test"])
async def test_ipv6_literal_queues_are_delivered(
    domain: str, pipeline: Pipeline, logs: LogWatcher, sinks: Sinks
) -> None:
    if "::1" not in sinks.by_host:
        pytest.skip("this machine has no IPv6 loopback")
    recipient = unique("v6", domain)
    await send_smtp_async(pipeline, [recipient])
    records = await logs.wait_for(has_final, recipient)
    assert records[-1]["type"] == "Delivery", records[-1]
    assert sinks.received_by(recipient) == ["::1"]


async def test_a_4xx_is_retried_on_the_backoff_schedule_then_delivered(
    pipeline: Pipeline, logs: LogWatcher, sinks: Sinks
) -> None:
    recipient = unique("retry", "retry.test")
    refusals = 3
    sinks.by_host[MAIN_SINK].answer_rcpt(recipient, "451 4.3.0 come back later", times=refusals)
    await send_smtp_async(pipeline, [recipient])
    records = await logs.wait_for(has_final, recipient, within=60)
    assert types_of(records) == ["Reception"] + ["TransientFailure"] * refusals + ["Delivery"]
    assert all(r["response"]["code"] == 451 for r in records[1:-1])
    # KumoMTA's num_attempts: the attempts made before this one.
    assert records[-1]["num_attempts"] == refusals
    assert sinks.received_by(recipient) == [MAIN_SINK]
    # retry_interval is 1s for this domain, doubling after each attempt (KumoMTA's schedule;
    # its jitter, a twentieth of the interval, rounds to nothing): 1s, 2s, 4s.
    attempts = [datetime.fromisoformat(r["event_time"]) for r in records[1:]]
    waited = [(b - a).total_seconds() for a, b in itertools.pairwise(attempts)]
    expected = [
        next_retry_delay(n, timedelta(seconds=1), None).total_seconds() for n in range(refusals)
    ]
    assert expected == [1.0, 2.0, 4.0]
    # Due times are exact; a release waits for the scheduler's tick (0.2s) and the attempt
    # takes its time on a busy machine, never less.
    for got, due in zip(waited, expected, strict=True):
        assert due - 0.1 <= got <= due + 1.5, (waited, expected)


async def test_a_5xx_is_a_bounce(pipeline: Pipeline, logs: LogWatcher, sinks: Sinks) -> None:
    recipient = unique("bounce", "bounce.test")
    sinks.by_host[MAIN_SINK].answer_rcpt(recipient, "550 5.1.1 no such user")
    await send_smtp_async(pipeline, [recipient])
    records = await logs.wait_for(has_final, recipient)
    assert types_of(records) == ["Reception", "Bounce"]
    assert records[-1]["response"]["code"] == 550
    assert records[-1]["response"]["enhanced_code"] == {"class": 5, "subject": 1, "detail": 1}


async def test_nxdomain_stays_transient_until_max_age_then_expires(
    pipeline: Pipeline, logs: LogWatcher
) -> None:
    recipient = unique("nx", "nxdomain.test")
    started = time.monotonic()
    await send_smtp_async(pipeline, [recipient])
    records = await logs.wait_for(has_final, recipient, within=90)
    kinds = types_of(records)
    assert kinds[0] == "Reception"
    assert kinds[-1] == "Expiration"
    assert set(kinds[1:-1]) == {"TransientFailure"}
    assert all(r["response"]["code"] == 451 for r in records[1:-1])
    assert records[-1]["response"]["code"] == 551
    assert records[-1]["response"]["enhanced_code"] == {"class": 5, "subject": 4, "detail": 7}
    assert "max_age" in records[-1]["response"]["content"]
    # max_age is 6s for this domain: it took retries over several seconds, never a bounce.
    assert time.monotonic() - started >= 3


async def test_null_mx_bounces(pipeline: Pipeline, logs: LogWatcher) -> None:
    recipient = unique("nullmx", "nullmx.test")
    await send_smtp_async(pipeline, [recipient])
    records = await logs.wait_for(has_final, recipient)
    assert types_of(records) == ["Reception", "Bounce"]
    bounce = records[-1]
    assert bounce["response"]["code"] == 556
    assert bounce["response"]["enhanced_code"] == {"class": 5, "subject": 1, "detail": 10}


async def test_the_null_queue_discards_after_reception(
    pipeline: Pipeline, logs: LogWatcher, sinks: Sinks
) -> None:
    recipient = unique("discard", "discard.test")
    await send_smtp_async(pipeline, [recipient])
    records = await logs.wait_for(lambda rs: "Reception" in types_of(rs), recipient)
    assert records[0]["queue"] == "null"
    # Give the pipeline time to (wrongly) deliver it; nothing more may happen.
    await asyncio.sleep(3)
    assert types_of(logs.for_recipient(recipient)) == ["Reception"]
    assert sinks.received_by(recipient) == []


async def test_a_message_the_policy_refuses_is_answered_550_at_data_and_never_queued(
    pipeline: Pipeline, logs: LogWatcher, sinks: Sinks
) -> None:
    refused, fine = unique("refused", "refused.test"), unique("fine", "plain.test")
    with pytest.raises(smtplib.SMTPDataError) as answer:
        await send_smtp_async(pipeline, [fine, refused])
    assert (answer.value.smtp_code, answer.value.smtp_error) == (550, b"5.7.1 refused by policy")
    # Nothing of the transaction was accepted: the client's next try is the only copy.
    await send_smtp_async(pipeline, [fine])
    await logs.wait_for(has_final, fine)
    assert types_of(logs.for_recipient(fine)) == ["Reception", "Delivery"]
    assert logs.for_recipient(refused) == []
    assert sinks.received_by(fine) == [MAIN_SINK]


def test_an_open_relay_attempt_is_refused(pipeline: Pipeline) -> None:
    with smtplib.SMTP(
        "127.0.0.1", pipeline.smtp_port, timeout=30, source_address=("127.0.0.9", 0)
    ) as client:
        client.ehlo("outside.example")
        client.mail("spammer@example.org")
        code, message = client.rcpt("victim@plain.test")
    assert code == 550
    assert b"5.7.1" in message


async def test_an_mx_list_override_redirects_the_next_attempt_without_a_restart(
    pipeline: Pipeline, logs: LogWatcher, sinks: Sinks
) -> None:
    recipient = unique("override", "override.test")
    # The domain's MX host defers this recipient, so the message waits in its queue.
    sinks.by_host[MAIN_SINK].answer_rcpt(recipient, "451 4.3.0 not here")
    await send_smtp_async(pipeline, [recipient])
    await logs.wait_for(lambda rs: "TransientFailure" in types_of(rs), recipient)

    # The operator points the domain's queues at another host, as an event.
    command = [
        sys.executable, "-m", "relaystream", "queue-config", "set", "override.test",
        "--mx-list", f"[{MX_LIST_SINK}]", "--reason", "e2e: move off the deferring host",
        "--bootstrap", pipeline.bootstrap, "--prefix", pipeline.prefix,
    ]  # fmt: skip
    result = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr

    records = await logs.wait_for(has_final, recipient)
    delivery = records[-1]
    assert delivery["type"] == "Delivery"
    assert delivery["queue"] == "override.test"  # the queue name is unchanged by mx_list
    assert delivery["peer_address"]["addr"] == MX_LIST_SINK
    assert sinks.received_by(recipient) == [MX_LIST_SINK]
