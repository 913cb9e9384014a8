"""`POST /api/inject/v1` through real HTTP (aiohttp client) and the real broker."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from ingest_harness import (
    ACCEPTED_MAX_BYTES,
    RunningIngest,
    ingest_settings,
    read_events,
    running_ingest,
    topics_with_small_accepted,
)

from relaystream.core.kafka.topics import TopicCatalog


@pytest.fixture
async def topics(kafka_bootstrap: str, topic_prefix: str) -> TopicCatalog:
    return await topics_with_small_accepted(kafka_bootstrap, topic_prefix, partitions=2)


async def post(
    ingest: RunningIngest, body: Any, *, token: str | None = None, raw: bytes | None = None
) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{ingest.endpoints.http_port}/api/inject/v1"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as client:
        data = raw if raw is not None else json.dumps(body).encode()
        async with client.post(url, data=data, headers=headers) as response:
            return response.status, await response.json(content_type=None)


def meta_of(event: dict[str, Any]) -> dict[str, Any]:
    return {name: json.loads(value) for name, value in event["meta"].items()}


async def test_builder_request_becomes_one_message_per_recipient(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicCatalog
) -> None:
    request = {
        "envelope_sender": "bounce@example.com",
        "recipients": [
            {"email": "ann@example.org", "name": "Ann", "metadata": {"order": 7}},
            {"email": "bob@example.net", "substitutions": {"name": "Robert"}},
            {"email": "not an address"},
        ],
        "content": {
            "from": {"email": "news@example.com", "name": "News"},
            "subject": "Hello {{ name }}",
            "text_body": "Dear {{ name }}, your code is {{ code }}.",
            "headers": {"X-Campaign": "spring"},
        },
        "substitutions": {"code": "XYZ"},
    }
    async with running_ingest(ingest_settings(kafka_bootstrap, topic_prefix)) as ingest:
        status, body = await post(ingest, request)
    assert status == 200
    assert body["success_count"] == 2 and body["fail_count"] == 1
    assert body["failed_recipients"] == ["not an address"]
    assert len(body["errors"]) == 1 and body["errors"][0].startswith("not an address:")

    events = dict(
        (event["recipient"], event)
        for _, event in await read_events(
            kafka_bootstrap, topics.accepted.name, 2, schema="MessageAccepted"
        )
    )
    ann, bob = events["ann@example.org"], events["bob@example.net"]
    assert ann["sender"] == "bounce@example.com" and ann["reception_protocol"] == "HTTP"
    assert ann["transaction_id"] == bob["transaction_id"] and ann["id"] != bob["id"]
    assert b"Subject: Hello Ann\r\n" in ann["content"]
    assert b"Dear Robert, your code is XYZ." in bob["content"]
    assert b"To: Ann <ann@example.org>\r\n" in ann["content"]
    assert b"X-Campaign: spring\r\n" in ann["content"]
    assert meta_of(ann)["extra"] == {"order": 7} and "extra" not in meta_of(bob)
    assert meta_of(ann)["received_from"] == "127.0.0.1"
    assert meta_of(ann)["reception_protocol"] == "HTTP"


async def test_raw_content_is_sent_with_crlf_line_ends(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicCatalog
) -> None:
    request = {
        "envelope_sender": "",
        "recipients": [{"email": "ann@example.org"}],
        "content": "Subject: raw\nTo: {{ email }}\n\nline one\nline two\n",
    }
    async with running_ingest(ingest_settings(kafka_bootstrap, topic_prefix)) as ingest:
        status, body = await post(ingest, request)
    assert (status, body["success_count"]) == (200, 1)
    [(_, event)] = await read_events(
        kafka_bootstrap, topics.accepted.name, 1, schema="MessageAccepted"
    )
    assert event["sender"] == ""
    assert (
        event["content"] == b"Subject: raw\r\nTo: ann@example.org\r\n\r\nline one\r\nline two\r\n"
    )


async def test_bad_requests_get_400_or_422_with_reasons(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicCatalog
) -> None:
    async with running_ingest(ingest_settings(kafka_bootstrap, topic_prefix)) as ingest:
        not_json = await post(ingest, None, raw=b"{not json")
        not_object = await post(ingest, [1, 2])
        invalid = await post(
            ingest,
            {
                "envelope_sender": "bounce@example.com",
                "recipients": [{"email": "a@example.org", "colour": "red"}],
                "content": {"subject": "no body"},
                "deferred": True,
            },
        )
        no_recipients = await post(
            ingest, {"envelope_sender": "a@example.com", "recipients": [], "content": "x"}
        )
    assert not_json[0] == 400 and not_json[1]["errors"]
    assert not_object[0] == 400
    assert invalid[0] == 422
    assert set(invalid[1]["errors"]) == {
        "deferred: unknown field",
        "recipients[0].colour: unknown field",
        "content: at least one of text_body and html_body is required",
    }
    assert no_recipients[0] == 422
    assert no_recipients[1]["errors"] == ["recipients: required: a non-empty list"]


async def test_a_bearer_token_is_required_once_tokens_are_configured(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicCatalog, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# injection clients\nfile-token\n")
    settings = ingest_settings(
        kafka_bootstrap, topic_prefix, api_tokens=("env-token",), api_tokens_file=tokens
    )
    request = {
        "envelope_sender": "a@example.com",
        "recipients": [{"email": "b@example.org"}],
        "content": "Subject: x\r\n\r\ny\r\n",
    }
    async with running_ingest(settings) as ingest:
        missing = await post(ingest, request)
        wrong = await post(ingest, request, token="guess")
        from_env = await post(ingest, request, token="env-token")
        from_file = await post(ingest, request, token="file-token")
    assert missing[0] == 401 and wrong[0] == 401
    assert from_env[0] == 200 and from_file[0] == 200


async def test_nothing_is_half_accepted_when_one_record_fails(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicCatalog
) -> None:
    """Ann's message fits the topic, Bob's does not: the transaction aborts, 503, and Ann's
    record stays invisible to read_committed readers."""
    # Random, so compression cannot bring it under the topic's limit.
    incompressible_text = base64.b64encode(os.urandom(3 * ACCEPTED_MAX_BYTES)).decode()
    request = {
        "envelope_sender": "a@example.com",
        "recipients": [
            {"email": "ann@example.org", "substitutions": {"pad": "small"}},
            {"email": "bob@example.org", "substitutions": {"pad": incompressible_text}},
        ],
        "content": {"subject": "s", "text_body": "{{ pad }}"},
    }
    follow_up = {
        "envelope_sender": "a@example.com",
        "recipients": [{"email": "carl@example.org"}],
        "content": "Subject: after\r\n\r\nok\r\n",
    }
    settings = ingest_settings(kafka_bootstrap, topic_prefix, kafka_ack_timeout_seconds=20.0)
    async with running_ingest(settings) as ingest:
        failed = await post(ingest, request)
        # The acceptor recovers: the next request commits.
        succeeded = await post(ingest, follow_up)
    assert failed[0] == 503
    assert succeeded[0] == 200
    events = await read_events(
        kafka_bootstrap, topics.accepted.name, 1, schema="MessageAccepted", settle_seconds=3.0
    )
    assert [event["recipient"] for _, event in events] == ["carl@example.org"]


async def test_input_limits_refuse_with_reasons_and_accept_nothing_of_a_refused_request(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicCatalog
) -> None:
    """Issue 16, finding 6: deep JSON was a 500 (RecursionError), a 200,000-character sender
    was accepted and bounced later. Each limit answers 4xx with its reason; only the good
    request at the end reaches Kafka."""

    def request(sender: str, **fields: Any) -> dict[str, Any]:
        return {
            "envelope_sender": sender,
            "recipients": [{"email": "ann@example.org"}],
            "content": "Subject: s\r\n\r\nbody\r\n",
            **fields,
        }

    bomb = {
        "envelope_sender": "a@example.com",
        "recipients": [{"email": "bomb@example.org", "substitutions": {"v": "x" * 100_000}}],
        "content": "Subject: s\r\n\r\n" + "{{ v }}" * 1_000,  # 100 MB once expanded
    }
    settings = ingest_settings(
        kafka_bootstrap, topic_prefix, max_message_size=50_000, http_max_request_bytes=250_000
    )
    async with running_ingest(settings) as ingest:
        deep = await post(ingest, None, raw=b"[" * 50_000 + b"]" * 50_000)
        deep_inside = await post(ingest, None, raw=b'{"substitutions": ' + b"[" * 50_000)
        long_sender = await post(ingest, request("a" * 200_000 + "@example.com"))
        long_local_part = await post(ingest, request("a" * 65 + "@example.com"))
        long_subject = await post(
            ingest, request("a@example.com", content={"subject": "s" * 999, "text_body": "t"})
        )
        too_big = await post(ingest, None, raw=b'{"content": "' + b"x" * 300_000 + b'"}')
        expanded = await post(ingest, bomb)
        good = await post(ingest, request("b" * 64 + "@example.com"))
    assert deep == (
        400,
        {"errors": ["request body nests arrays and objects deeper than 32 levels"]},
    )
    assert deep_inside[0] == 400
    assert long_sender == (
        422,
        {"errors": ["envelope_sender: 200012 characters, at most 254"]},
    )
    assert long_local_part[0] == 422
    assert long_local_part[1]["errors"] == [
        "envelope_sender: local part of 65 octets is longer than RFC 5321 allows (64)"
    ]
    assert long_subject == (422, {"errors": ["content.subject: 999 characters, at most 998"]})
    assert too_big == (413, {"errors": ["request body exceeds the limit of 250000 bytes"]})
    assert expanded[0] == 200 and expanded[1]["fail_count"] == 1
    assert expanded[1]["errors"] == [
        "bomb@example.org: substitutions expand the text past 50000 characters"
    ]
    assert good[0] == 200 and good[1]["success_count"] == 1
    events = await read_events(
        kafka_bootstrap, topics.accepted.name, 1, schema="MessageAccepted", settle_seconds=2.0
    )
    assert [event["sender"] for _, event in events] == ["b" * 64 + "@example.com"]
