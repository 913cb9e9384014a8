"""The policy at reception, as in KumoMTA: ingest runs the SMTP-time events and the reception
handler before it answers, so a kumo.reject or a policy failure is the client's answer and
nothing is accepted. Real SMTP (smtplib) and HTTP clients, the real ingest and broker."""

from __future__ import annotations

import asyncio
import json
import smtplib
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from ingest_harness import RunningIngest, ingest_settings, read_events, running_ingest

from relaystream.core.kafka.admin import ensure_topics
from relaystream.core.kafka.producer import EventProducer
from relaystream.core.kafka.submission import publish_submission
from relaystream.core.kafka.topics import TopicCatalog, TopicSettings, declare_topics
from relaystream.core.runtime.settings import RoutingSettings, Settings

POLICY = """\
local kumo = require 'kumo'
kumo.on('smtp_server_connection_accepted', function(conn_meta)
  if conn_meta:get_meta('received_from'):match('^127%.0%.0%.2:') then
    kumo.reject(421, '4.7.0 not from this address')
  end
  conn_meta:set_meta('x_connected', true)
end)
kumo.on('smtp_server_ehlo', function(domain, conn_meta, extensions)
  if domain == 'bad.actor' then
    kumo.reject(550, '5.7.1 go away')
  end
  table.insert(extensions, 'X-POLICY-WAS-HERE')
  return extensions
end)
kumo.on('smtp_server_auth_plain', function(authz, authc, password, conn_meta)
  return authc == 'daniel' and password == 'tiger'
end)
kumo.on('smtp_server_mail_from', function(sender, conn_meta)
  conn_meta:set_meta('x_mail_from', sender.email)
end)
kumo.on('smtp_server_rcpt_to', function(recipient, conn_meta)
  if recipient.user == 'nobody' then
    kumo.reject(550, '5.1.1 no such user here')
  end
end)
local function received(msg)
  local user = msg:recipient().user
  if user == 'reject' then
    kumo.reject(554, '5.7.1 not this message')
  elseif user == 'boom' then
    error('a bug in the policy')
  end
  msg:set_meta('tenant', 'acme')
end
kumo.on('smtp_server_message_received', function(msg, conn_meta)
  received(msg)
  msg:set_meta('x_from_session', conn_meta:get_meta('x_mail_from'))
end)
kumo.on('http_message_generated', received)
"""
MESSAGE = b"From: a@example.com\r\nSubject: hello\r\n\r\nbody line\r\n"


@pytest.fixture
async def topics(kafka_bootstrap: str, topic_prefix: str) -> TopicCatalog:
    catalog = declare_topics(TopicSettings(prefix=topic_prefix, partitions=1))
    await ensure_topics(kafka_bootstrap, catalog)
    return catalog


def with_policy(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Settings:
    path = tmp_path / "policy.lua"
    path.write_text(POLICY, encoding="utf-8")
    settings = ingest_settings(kafka_bootstrap, topic_prefix)
    return replace(settings, routing=RoutingSettings(policy_path=path))


def meta_of(event: dict[str, Any]) -> dict[str, Any]:
    return {name: json.loads(value) for name, value in event["meta"].items()}


def data(smtp: smtplib.SMTP) -> tuple[int, bytes]:
    """DATA's reply (smtplib raises on anything but 250)."""
    try:
        return smtp.data(MESSAGE)
    except smtplib.SMTPDataError as error:
        return error.smtp_code, error.smtp_error


def smtp_dialogue(port: int) -> dict[str, Any]:
    """Three transactions on one session (smtplib, in a thread): the replies it got."""
    replies: dict[str, Any] = {}
    try:
        smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=("127.0.0.2", 0))
    except smtplib.SMTPConnectError as error:
        replies["banner_refused"] = (error.smtp_code, error.smtp_error)
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        replies["ehlo_refused"] = smtp.ehlo("bad.actor")
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=30) as smtp:
        smtp.ehlo()
        replies["extensions"] = set(smtp.esmtp_features)
        try:
            smtp.login("daniel", "lion")
        except smtplib.SMTPAuthenticationError as error:
            replies["auth_refused"] = error.smtp_code
        # smtp_server_auth_plain decides for a user the users file does not know.
        replies["auth_accepted"] = smtp.login("daniel", "tiger")
        # 1. A recipient the policy refuses at RCPT, another it takes.
        smtp.mail("alice@example.org")
        replies["rcpt_refused"] = smtp.rcpt("nobody@example.com")
        replies["rcpt_taken"] = smtp.rcpt("bob@example.com")
        smtp.rset()
        # 2. kumo.reject in smtp_server_message_received: the answer to DATA.
        smtp.mail("alice@example.org")
        smtp.rcpt("carol@example.com")
        smtp.rcpt("reject@example.com")
        replies["data_rejected"] = data(smtp)
        # 3. A policy error: 451, the client retries later.
        smtp.mail("alice@example.org")
        smtp.rcpt("boom@example.com")
        replies["data_failed"] = data(smtp)
        # 4. What the policy takes is accepted as the handler left it.
        smtp.mail("alice@example.org")
        smtp.rcpt("dave@example.com")
        replies["data_accepted"] = smtp.data(MESSAGE)
    return replies


async def test_smtp_refusals_are_the_answers_to_rcpt_and_data_and_nothing_refused_is_accepted(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicCatalog, tmp_path: Path
) -> None:
    settings = with_policy(kafka_bootstrap, topic_prefix, tmp_path)
    async with running_ingest(settings) as ingest:
        replies = await asyncio.to_thread(smtp_dialogue, ingest.endpoints.smtp_port)
        events = await read_events(
            kafka_bootstrap, topics.accepted.name, 1, schema="MessageAccepted", settle_seconds=1.0
        )
    assert replies["banner_refused"] == (421, b"4.7.0 not from this address")
    assert replies["ehlo_refused"] == (550, b"5.7.1 go away")
    assert {"x-policy-was-here", "auth", "pipelining"} <= replies["extensions"]
    assert replies["auth_refused"] == 535
    assert replies["auth_accepted"][0] == 235
    assert replies["rcpt_refused"] == (550, b"5.1.1 no such user here")
    assert replies["rcpt_taken"][0] == 250
    assert replies["data_rejected"] == (554, b"5.7.1 not this message")
    assert replies["data_failed"] == (451, b"4.3.0 technical difficulties")
    assert replies["data_accepted"][0] == 250
    # Only the last transaction's message: nothing of a refused transaction is accepted.
    assert [event["recipient"] for _, event in events] == ["dave@example.com"]
    event = events[0][1]
    meta = meta_of(event)
    assert meta["tenant"] == "acme"
    assert meta["x_from_session"] == "alice@example.org"  # conn_meta, set at MAIL FROM
    assert meta["authn_id"] == "daniel"
    assert meta["x_connected"] is True  # conn_meta, set before the banner
    run = event["reception_policy"]
    assert run is not None
    assert run["policy_name"] == "policy.lua" and len(run["policy_hash"]) == 64
    assert "tenant" not in meta_of({"meta": run["meta_before"]})
    assert run["rejection"] is None


async def post(ingest: RunningIngest, body: Any) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{ingest.endpoints.http_port}/api/inject/v1"
    async with aiohttp.ClientSession() as client, client.post(url, json=body) as response:
        return response.status, await response.json(content_type=None)


async def test_http_and_kafka_refusals_happen_before_acceptance(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicCatalog, tmp_path: Path
) -> None:
    settings = with_policy(kafka_bootstrap, topic_prefix, tmp_path)
    async with (
        running_ingest(settings) as ingest,
        EventProducer(kafka_bootstrap, client_id="app") as producer,
    ):
        status, body = await post(
            ingest,
            {
                "envelope_sender": "app@example.org",
                "recipients": [{"email": "reject@example.com"}, {"email": "erin@example.com"}],
                "content": "Subject: hi\r\n\r\nover HTTP\r\n",
            },
        )
        http_events = await read_events(
            kafka_bootstrap, topics.accepted.name, 1, schema="MessageAccepted", settle_seconds=1.0
        )
        await publish_submission(
            producer,
            "app@example.org",
            ["reject@example.com", "boom@example.com"],
            MESSAGE,
            submission_id="refused-1",
            topic=topics.submit.name,
        )
        events = await read_events(
            kafka_bootstrap, topics.accepted.name, 3, schema="MessageAccepted"
        )
    # HTTP: the refused recipient fails alone, before anything is accepted (KumoMTA's answer).
    assert status == 200
    assert body["success_count"] == 1 and body["failed_recipients"] == ["reject@example.com"]
    assert body["errors"] == ["reject@example.com: 554 5.7.1 not this message"]
    assert [event["recipient"] for _, event in http_events] == ["erin@example.com"]
    # Kafka: each refused message is written marked with its refusal for routing to record
    # as a Rejection, with the reason; never dropped.
    marked = {event["recipient"]: event["reception_policy"] for _, event in events[1:]}
    rejected, failed = marked["reject@example.com"], marked["boom@example.com"]
    assert rejected["rejection"]["code"] == 554 and rejected["failure"] is None
    assert failed["rejection"]["code"] == 451
    assert "a bug in the policy" in failed["failure"]


async def test_http_says_which_refusals_are_temporary_and_503_when_only_a_retry_can_help(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicCatalog, tmp_path: Path
) -> None:
    settings = with_policy(kafka_bootstrap, topic_prefix, tmp_path)

    def request(*users: str) -> dict[str, Any]:
        return {
            "envelope_sender": "app@example.org",
            "recipients": [{"email": f"{user}@example.com"} for user in users],
            "content": "Subject: hi\r\n\r\nover HTTP\r\n",
        }

    async with running_ingest(settings) as ingest:
        # A policy failure (451) and a permanent refusal (554), nothing accepted: a retry of
        # the whole request can help and duplicates nothing.
        only_failed = await post(ingest, request("boom", "reject"))
        # Something accepted: 200, and the temporary failure is named for the client to retry.
        some_accepted = await post(ingest, request("boom", "erin"))
        # Only permanent refusals: a retry cannot help.
        only_rejected = await post(ingest, request("reject"))
        await read_events(kafka_bootstrap, topics.accepted.name, 1, schema="MessageAccepted")
    status, body = only_failed
    assert status == 503
    assert body["success_count"] == 0
    assert body["failed_recipients"] == ["boom@example.com", "reject@example.com"]
    assert body["temporarily_failed_recipients"] == ["boom@example.com"]
    assert body["errors"][0].startswith("boom@example.com: 451 4.3.0 ")
    assert body["errors"][1] == "reject@example.com: 554 5.7.1 not this message"
    status, body = some_accepted
    assert status == 200 and body["success_count"] == 1
    assert body["temporarily_failed_recipients"] == ["boom@example.com"]
    status, body = only_rejected
    assert status == 200 and body["success_count"] == 0
    assert body["temporarily_failed_recipients"] == []
