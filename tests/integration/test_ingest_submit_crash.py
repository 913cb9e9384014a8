"""Crash safety of the `submit` path: `relaystream run ingest` SIGKILLed mid-stream, restarted.

Exactly once: every submission's messages are on `accepted` (read_committed) once each. The
submit consumer writes a batch's MessageAccepted records and commits its consumed offsets in one
Kafka transaction, so the batch open at the kill is aborted whole and converted again after the
restart. (When the offsets were committed a second after the write, the submissions written in
that second came back after the restart: the same message ids twice on `accepted`.)
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections import Counter
from pathlib import Path

from routing_support import WAIT_SECONDS, committed_offsets, create_topics, end_offsets, read_topic
from service_process import ServiceProcess

from relaystream.core.kafka.producer import EventProducer
from relaystream.core.kafka.submission import publish_submission
from relaystream.core.kafka.topics import TopicSpec
from relaystream.ingest.message_ids import submission_message_id

SUBMISSIONS = 3000
KILL_AFTER = 400
CONTENT = b"Subject: crash test\r\n\r\nhello\r\n"


def recipients_of(index: int) -> list[str]:
    """One to three recipients, so that a submission's records are several now and then."""
    return [f"r{index}-{n}@domain{index % 13}.example" for n in range(1 + index % 3)]


async def publish_all(bootstrap: str, topic: str) -> set[str]:
    """Publish the submissions; the message ids they must become."""
    expected: set[str] = set()
    async with EventProducer(bootstrap, client_id="test-app") as producer:
        sends = []
        for index in range(SUBMISSIONS):
            submission_id = f"crash-{index}"
            recipients = recipients_of(index)
            expected |= {submission_message_id(submission_id, n) for n in range(len(recipients))}
            sends.append(
                publish_submission(
                    producer,
                    "app@example.com",
                    recipients,
                    CONTENT,
                    submission_id=submission_id,
                    topic=topic,
                )
            )
        await asyncio.gather(*sends)
    return expected


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_for_ids(bootstrap: str, topic: TopicSpec, ids: set[str]) -> None:
    """Until `topic` holds a record of every id in `ids` (duplicates count once)."""
    for _ in range(int(WAIT_SECONDS)):
        if {r.value["id"] for r in await read_topic(bootstrap, topic)} >= ids:
            return
        await asyncio.sleep(1.0)
    raise AssertionError(f"not every id reached {topic.name}")


async def test_sigkill_mid_stream_accepts_every_submission_exactly_once(
    kafka_bootstrap: str, topic_prefix: str, log_path: Path
) -> None:
    topics = await create_topics(kafka_bootstrap, topic_prefix)
    expected = await publish_all(kafka_bootstrap, topics.submit.name)

    service = ServiceProcess(
        "ingest",
        bootstrap=kafka_bootstrap,
        prefix=topic_prefix,
        log_path=log_path,
        settings={
            "RELAYSTREAM_INGEST_SMTP_PORT": str(free_port()),
            "RELAYSTREAM_INGEST_HTTP_PORT": str(free_port()),
            # Stable across the restart, as a pod's: the restarted process fences its
            # predecessor's open transaction.
            "RELAYSTREAM_INGEST_TRANSACTIONAL_ID": f"{topic_prefix}ingest-{uuid.uuid4().hex}",
            "RELAYSTREAM_KAFKA_GROUP_INSTANCE_ID": "ingest-crash-test",
        },
    )
    try:
        service.start()
        await service.wait_ready()
        await read_topic(kafka_bootstrap, topics.accepted, count=KILL_AFTER)
        service.kill()
        before_restart = await read_topic(kafka_bootstrap, topics.accepted)
        assert len(before_restart) < len(expected), "killed too late: nothing in flight"

        service.start()
        await service.wait_ready()
        await wait_for_ids(kafka_bootstrap, topics.accepted, expected)
        assert service.terminate() == 0
        committed = await committed_offsets(
            kafka_bootstrap, topics.group_id("ingest-submit"), topics.submit.name
        )
        assert committed == await end_offsets(kafka_bootstrap, topics.submit)
        accepted = await read_topic(kafka_bootstrap, topics.accepted)  # all, after the stop
    finally:
        service.close()

    copies = Counter(record.value["id"] for record in accepted)
    assert set(copies) == expected
    duplicated = {message_id: n for message_id, n in copies.items() if n != 1}
    assert duplicated == {}, f"{len(duplicated)} message ids accepted more than once"
