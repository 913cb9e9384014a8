"""Publishing mail from a Faust application: a codec for relaystream's Avro events.

Needs the `faust` extra (`pip install relaystream[faust]`, which pins faust-streaming); the
services never import this module. The codec writes and reads the single-object encoding the
services use (core/events/codec.py), so a `submit` record sent through it is exactly what
`publish_submission` sends. It is registered with Faust under `CODEC_NAME` twice over: by the
`faust.codecs` entry point of the installed distribution (Faust finds it without an import)
and by importing this module.

    app = faust.App("billing", broker="kafka://kafka:9092")
    submissions = submit_topic(app)

    @app.agent(invoices)
    async def mail_invoice(stream):
        async for invoice in stream:
            event = submission_event(SENDER, [invoice.email], render(invoice))
            await submissions.send(key=event["submission_id"].encode(), value=event)

Inside an agent the send goes out once the event that caused it is acknowledged (Faust's
at-least-once), so a crash can send it again: derive the submission id from the event, and
ingest gives the resent submission the same message ids (core/kafka/submission.py). `publish`
sends at once and waits for Kafka's acknowledgement (acks=all, Faust's default). An event that
does not fit the schema raises EncodeError naming the field, and nothing is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import faust
from faust.serializers import codecs
from faust.types import TopicT
from faust.types.codecs import CodecT
from faust.types.tuples import RecordMetadata

from ..core.events.codec import decode, encode
from ..core.events.records import MessageSubmitted
from ..core.kafka.topics import TopicCatalog, declare_topics

SUBMITTED_EVENT = "MessageSubmitted"
CODEC_NAME = "relaystream.MessageSubmitted"
# Faust adds its model metadata under this key when it serializes a faust.Record.
_FAUST_METADATA = "__faust"


class RelaystreamEventCodec(codecs.Codec):
    """One relaystream event (MessageSubmitted unless `event` says otherwise) in Avro
    single-object encoding. Dumps a mapping (or a faust.Record's fields), loads a dict in the
    current schema; `loads` of bytes that are not that event raises DecodeError."""

    def __init__(
        self, children: tuple[CodecT, ...] | None = None, event: str = SUBMITTED_EVENT
    ) -> None:
        # kwargs are what Faust's clone() passes back: keep `event` there.
        super().__init__(children=children, event=event)
        self.event = event

    def _dumps(self, obj: Any) -> bytes:
        if isinstance(obj, faust.Record):
            obj = obj.asdict()
        if not isinstance(obj, Mapping):
            raise TypeError(f"a {self.event} is a mapping of its fields, not {type(obj).__name__}")
        if _FAUST_METADATA in obj:
            obj = {name: value for name, value in obj.items() if name != _FAUST_METADATA}
        return encode(self.event, obj)

    def _loads(self, s: bytes) -> Any:
        _, record = decode(s, expected=self.event)
        return record


codecs.register(CODEC_NAME, RelaystreamEventCodec())


def submit_topic(app: faust.App, topics: TopicCatalog | None = None) -> TopicT:
    """The `submit` topic (of the default prefix unless `topics` says) as a Faust topic whose
    values go through the codec; keys are the submission ids as bytes."""
    catalog = topics or declare_topics()
    return app.topic(catalog.submit.name, key_serializer="raw", value_serializer=CODEC_NAME)


async def publish(topic: TopicT, event: MessageSubmitted) -> RecordMetadata:
    """Send one submission (key: its id) now and return once Kafka acknowledged it: from then
    on the mail is the pipeline's. Inside an agent too (`force`: not held back until the
    event being processed is acknowledged, which would make this wait for itself)."""
    pending = await topic.send(key=event["submission_id"].encode(), value=event, force=True)
    return await pending
