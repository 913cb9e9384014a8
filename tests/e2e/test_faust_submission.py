"""A Faust application's mail is delivered: examples/faust_welcome_mail.py on the pipeline.

The example's agent reads a sign-up and publishes a MessageSubmitted through relaystream's
Faust codec (relaystream.integrations.faust_codec); ingest's submit loop accepts it and the
pipeline delivers it to the sink.
"""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path
from types import ModuleType

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from harness import MAIN_SINK, LogWatcher, Pipeline, Sinks, has_final, types_of

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "faust_welcome_mail.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("faust_welcome_mail", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def create_topic(bootstrap: str, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()


async def test_a_faust_agent_publishes_mail_that_is_delivered(
    pipeline: Pipeline, logs: LogWatcher, sinks: Sinks
) -> None:
    example = load_example()
    signups_topic = f"{pipeline.prefix}signups"
    await create_topic(pipeline.bootstrap, signups_topic)
    recipient = f"faust-{uuid.uuid4().hex[:8]}@plain.test"
    app = example.welcome_mail_app(pipeline.bootstrap, pipeline.prefix, signups_topic)
    await app.start()
    try:
        signups = app.topic(signups_topic, value_type=example.SignUp)
        sent = await signups.send(value=example.SignUp(email=recipient, name="Ada"))
        await sent  # acknowledged by Kafka
        records = await logs.wait_for(has_final, recipient)
    finally:
        await app.stop()

    assert types_of(records) == ["Reception", "Delivery"]
    reception, delivery = records
    assert reception["reception_protocol"] == "Kafka"
    assert reception["sender"] == example.SENDER
    assert delivery["response"]["code"] == 250
    assert sinks.received_by(recipient) == [MAIN_SINK]
    [delivered] = [
        message for message in sinks.by_host[MAIN_SINK].messages if recipient in message.recipients
    ]
    assert b"Subject: Welcome, Ada" in delivered.content
