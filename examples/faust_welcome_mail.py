"""A Faust application that mails a welcome message for every sign-up it reads.

Its agent reads `SignUp` records from the `signups` topic and publishes one MessageSubmitted
per sign-up on relaystream's `submit` topic, through relaystream's Faust codec
(`relaystream.integrations.faust_codec`); ingest turns it into accepted mail and the pipeline
delivers it. Run it next to a running relaystream (`relaystream dev`):

    pip install 'relaystream[faust]'
    RELAYSTREAM_KAFKA_BOOTSTRAP=127.0.0.1:9092 python examples/faust_welcome_mail.py worker
    python examples/faust_welcome_mail.py send signups '{"email": "a@example.org", "name": "A"}'

It uses the services' variables for the broker and the topic prefix
(`RELAYSTREAM_KAFKA_BOOTSTRAP`, `RELAYSTREAM_TOPIC_PREFIX`). The submission id is derived from
the sign-up, so when Faust's at-least-once processing hands the agent a sign-up again after a
crash, ingest gives the resent submission the same message ids as the first.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable
from email.message import EmailMessage

import faust

from relaystream.core.kafka.submission import submission_event
from relaystream.core.kafka.topics import TopicSettings, declare_topics
from relaystream.integrations.faust_codec import submit_topic

SENDER = "welcome@example.com"


class SignUp(faust.Record, serializer="json"):
    email: str
    name: str


def welcome_message(signup: SignUp) -> bytes:
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = signup.email
    message["Subject"] = f"Welcome, {signup.name}"
    message.set_content(f"Hello {signup.name},\n\nthanks for signing up.\n")
    return message.as_bytes()


def welcome_mail_app(
    bootstrap: str, topic_prefix: str, signups_topic: str = "signups"
) -> faust.App:
    """The app; its one agent turns each sign-up into a submission."""
    app = faust.App(
        "welcome-mail",
        broker=f"kafka://{bootstrap}",
        store="memory://",
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
    )
    signups = app.topic(signups_topic, value_type=SignUp)
    submissions = submit_topic(app, declare_topics(TopicSettings(prefix=topic_prefix)))

    @app.agent(signups)
    async def send_welcome(stream: AsyncIterable[SignUp]) -> None:
        async for signup in stream:
            event = submission_event(
                SENDER,
                [signup.email],
                welcome_message(signup),
                submission_id=f"welcome:{signup.email}",
                meta={"campaign": "welcome"},
            )
            # Sent once this sign-up is acknowledged (Faust's at-least-once).
            await submissions.send(key=event["submission_id"].encode(), value=event)

    return app


app = welcome_mail_app(
    os.environ.get("RELAYSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
    os.environ.get("RELAYSTREAM_TOPIC_PREFIX", TopicSettings().prefix),
)

if __name__ == "__main__":
    app.main()
