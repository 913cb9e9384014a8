"""`relaystream publish`: send one message through the `submit` topic (as an upstream app would)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaError

from ..core.events.meta import MetaError
from ..core.kafka.producer import EventProducer
from ..core.kafka.submission import SubmissionError, publish_submission
from .common import add_kafka_options, kafka_target


def register(subparsers: Any) -> None:
    publish = subparsers.add_parser(
        "publish", help="publish a message on the submit topic for the ingest service"
    )
    publish.add_argument("--sender", required=True, help='envelope sender ("" for <>)')
    publish.add_argument(
        "--recipient", action="append", required=True, help="envelope recipient (repeatable)"
    )
    source = publish.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", type=Path, help="the RFC 5322 message (e.g. message.eml)")
    source.add_argument("--stdin", action="store_true", help="read the message from stdin")
    publish.add_argument(
        "--meta",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="message metadata; VALUE is JSON if it parses, else a string (repeatable)",
    )
    publish.add_argument("--submission-id", help="idempotency key (default: a random id)")
    add_kafka_options(publish)
    publish.set_defaults(handler=publish_command)


def parse_meta(items: list[str]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--meta {item!r}: expected KEY=VALUE")
        try:
            meta[key] = json.loads(value)
        except ValueError:
            meta[key] = value
    return meta


async def _publish(args: argparse.Namespace, content: bytes, meta: dict[str, Any]) -> str:
    bootstrap, topics = kafka_target(args)
    async with EventProducer(bootstrap, client_id="relaystream-publish") as producer:
        return await publish_submission(
            producer,
            args.sender,
            args.recipient,
            content,
            meta,
            args.submission_id,
            topic=topics.submit.name,
        )


def publish_command(args: argparse.Namespace) -> int:
    try:
        meta = parse_meta(args.meta)
        content = sys.stdin.buffer.read() if args.stdin else args.file.read_bytes()
        submission_id = asyncio.run(_publish(args, content, meta))
    except (ValueError, SubmissionError, MetaError, OSError) as error:
        print(f"relaystream publish: {error}", file=sys.stderr)
        return 2
    except KafkaError as error:
        print(f"relaystream publish: Kafka refused the submission: {error!r}", file=sys.stderr)
        return 1
    print(submission_id)
    return 0
