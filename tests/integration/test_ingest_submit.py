"""The `submit` topic consumer of the ingest service, fed through the publishing API."""

from __future__ import annotations

import json

import pytest
from ingest_harness import ingest_settings, read_events, running_ingest

from relaystream.core.events.codec import encode
from relaystream.core.kafka.admin import ensure_topics
from relaystream.core.kafka.producer import EventProducer
from relaystream.core.kafka.submission import publish_submission, submission_event
from relaystream.core.kafka.topics import TopicCatalog, TopicSettings, declare_topics
from relaystream.ingest.message_ids import submission_message_id

CONTENT = b"Subject: from an app\r\n\r\nhello\r\n"


@pytest.fixture
async def topics(kafka_bootstrap: str, topic_prefix: str) -> TopicCatalog:
    catalog = declare_topics(TopicSettings(prefix=topic_prefix, partitions=2))
    await ensure_topics(kafka_bootstrap, catalog)
    return catalog


async def test_a_submission_becomes_accepted_messages_with_stable_ids(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicCatalog
) -> None:
    async with (
        running_ingest(ingest_settings(kafka_bootstrap, topic_prefix)),
        EventProducer(kafka_bootstrap, client_id="app") as producer,
    ):
        for _ in range(2):  # the same submission twice, as after an unsure first attempt
            submission_id = await publish_submission(
                producer,
                "app@example.com",
                ["x@example.org", "y@example.org"],
                CONTENT,
                meta={"tenant": "billing"},
                submission_id="invoice-42",
                topic=topics.submit.name,
            )
        events = await read_events(
            kafka_bootstrap, topics.accepted.name, 4, schema="MessageAccepted"
        )
    assert submission_id == "invoice-42"
    expected_ids = {submission_message_id("invoice-42", i) for i in range(2)}
    assert {event["id"] for _, event in events} == expected_ids
    by_id: dict[str, list[dict[str, object]]] = {}
    for _, event in events:
        by_id.setdefault(str(event["id"]), []).append(event)
    first = by_id[submission_message_id("invoice-42", 0)]
    assert [event["recipient"] for event in first] == ["x@example.org"] * 2
    event = first[0]
    assert event["reception_protocol"] == "Kafka" and event["transaction_id"] == "invoice-42"
    assert event["content"] == CONTENT and event["sender"] == "app@example.com"
    meta = {name: json.loads(value) for name, value in event["meta"].items()}  # type: ignore[attr-defined]
    assert meta["tenant"] == "billing" and meta["submission_id"] == "invoice-42"


async def test_invalid_submissions_go_to_dead_letter_with_the_reason(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicCatalog
) -> None:
    bad_recipient = submission_event(
        "app@example.com", ["ok@example.org", "user@[::1]"], CONTENT, submission_id="bad-1"
    )
    async with (
        running_ingest(ingest_settings(kafka_bootstrap, topic_prefix)),
        EventProducer(kafka_bootstrap, client_id="app") as producer,
    ):
        await producer.send(topics.submit.name, b"not an event", key="junk")
        await producer.send(
            topics.submit.name, encode("MessageSubmitted", bad_recipient), key="bad-1"
        )
        await publish_submission(
            producer, "", ["fine@example.org"], CONTENT, topic=topics.submit.name
        )
        dead = await read_events(kafka_bootstrap, topics.dead_letter.name, 2, schema="DeadLetter")
        accepted = await read_events(
            kafka_bootstrap, topics.accepted.name, 1, schema="MessageAccepted", settle_seconds=2.0
        )
    reasons = {event["key"]: (event["error_type"], event["reason"]) for _, event in dead}
    assert reasons[b"junk"][0] == "decode"
    assert reasons[b"bad-1"][0] == "validation"
    assert reasons[b"bad-1"][1].startswith("recipients[1]:")
    assert all(event["service"] == "ingest" for _, event in dead)
    # Nothing of the invalid submission was accepted, the valid one was.
    assert [event["recipient"] for _, event in accepted] == ["fine@example.org"]
