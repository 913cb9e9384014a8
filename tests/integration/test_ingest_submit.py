"""The `submit` topic consumer of the ingest service, fed through the publishing API."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import aiosmtplib
import faust
import pytest
from aiokafka import AIOKafkaProducer
from ingest_harness import ingest_settings, read_events, running_ingest
from prometheus_client import REGISTRY

from relaystream.core.events.codec import encode
from relaystream.core.kafka.admin import ensure_topics
from relaystream.core.kafka.producer import EventProducer
from relaystream.core.kafka.submission import publish_submission, submission_event
from relaystream.core.kafka.topics import TopicCatalog, TopicSettings, declare_topics
from relaystream.ingest.message_ids import submission_message_id
from relaystream.ingest.service import SUBMIT_GROUP, submit_transactional_id
from relaystream.integrations.faust_codec import publish, submit_topic

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


async def test_a_faust_app_publishes_through_the_codec_and_the_submit_loop_accepts_it(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicCatalog
) -> None:
    app = faust.App(
        f"{topic_prefix}faust-app", broker=f"kafka://{kafka_bootstrap}", web_enabled=False
    )
    event = submission_event(
        "app@example.com", ["z@example.org"], CONTENT, meta={"via": "faust"}, submission_id="f-1"
    )
    async with running_ingest(ingest_settings(kafka_bootstrap, topic_prefix)):
        try:
            sent = await publish(submit_topic(app, topics), event)  # Faust's own producer
        finally:
            await app.producer.stop()
        [(_, accepted)] = await read_events(
            kafka_bootstrap, topics.accepted.name, 1, schema="MessageAccepted"
        )
    assert sent.topic == topics.submit.name
    assert accepted["id"] == submission_message_id("f-1", 0)
    assert accepted["reception_protocol"] == "Kafka" and accepted["transaction_id"] == "f-1"
    assert (accepted["sender"], accepted["recipient"]) == ("app@example.com", "z@example.org")
    assert accepted["content"] == CONTENT
    meta = {name: json.loads(value) for name, value in accepted["meta"].items()}  # type: ignore[attr-defined]
    assert meta["via"] == "faust"


async def test_a_fenced_submit_transaction_restarts_the_submit_loop_alone(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicCatalog
) -> None:
    """Another producer takes the submit loop's transactional id: the loop's next transaction
    fails (fenced). SMTP goes on answering 250, the loop restarts with a new producer (which
    fences the intruder back) and every submission lands exactly once."""
    settings = ingest_settings(kafka_bootstrap, topic_prefix)
    group = topics.group_id(SUBMIT_GROUP)
    aborted_before = aborted_transactions(group)
    async with (
        running_ingest(settings) as ingest,
        EventProducer(kafka_bootstrap, client_id="app") as producer,
    ):
        await publish_submission(
            producer, "", ["first@example.org"], CONTENT, submission_id="before-fence",
            topic=topics.submit.name,
        )  # fmt: skip
        await read_events(kafka_bootstrap, topics.accepted.name, 1, schema="MessageAccepted")
        intruder = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap,
            transactional_id=submit_transactional_id(settings, topics),
        )
        await intruder.start()  # init_transactions: the loop's producer is fenced from now on
        try:
            await publish_submission(
                producer, "", ["a@example.org", "b@example.org"], CONTENT,
                submission_id="after-fence", topic=topics.submit.name,
            )  # fmt: skip
            for _ in range(300):
                if aborted_transactions(group) > aborted_before:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the fenced submit transaction did not fail")
            # The loop failed; SMTP did not go down with it.
            smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=ingest.endpoints.smtp_port)
            await smtp.connect()
            refused, _ = await smtp.sendmail(  # raises unless the DATA reply is 250
                "me@example.com", ["smtp@example.org"], b"Subject: s\r\n\r\nbody\r\n"
            )
            await smtp.quit()
            assert refused == {}
        finally:
            await intruder.stop()
        events = await read_events(
            kafka_bootstrap, topics.accepted.name, 4, schema="MessageAccepted", settle_seconds=3.0
        )
    ids = Counter(str(event["id"]) for _, event in events)
    assert {i for i in ids if ids[i] > 1} == set()
    assert {submission_message_id("after-fence", i) for i in range(2)} <= set(ids)
    assert submission_message_id("before-fence", 0) in ids
    assert [event["recipient"] for _, event in events].count("smtp@example.org") == 1


def aborted_transactions(group: str) -> float:
    value = REGISTRY.get_sample_value(
        "relaystream_kafka_transactions_total", {"group": group, "result": "aborted"}
    )
    return value or 0.0
