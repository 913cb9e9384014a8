"""`relaystream logs`: the log records topic as KumoMTA-shaped JSON or one line per record."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from ..core.domain.log_record import LogRecord, RecordType, to_kumo_json
from ..core.events.codec import DecodeError, decode
from ..core.kafka.replay import replay_topic
from .common import add_kafka_options, kafka_target


def register(subparsers: Any) -> None:
    logs = subparsers.add_parser("logs", help="show the delivery log records (KumoMTA shape)")
    add_kafka_options(logs)
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new records")
    logs.add_argument(
        "--type",
        action="append",
        choices=[t.value for t in RecordType],
        help="only records of this type (repeatable)",
    )
    logs.add_argument("--id", help="only records of this message id")
    logs.add_argument("--json", action="store_true", help="one KumoMTA JSON record per line")
    logs.set_defaults(handler=logs_command)


def render_line(record: dict[str, Any]) -> str:
    response = record["response"]
    code = response["code"]
    enhanced = response.get("enhanced_code")
    status = (
        f"{code} {enhanced['class']}.{enhanced['subject']}.{enhanced['detail']}"
        if enhanced
        else str(code)
    )
    recipient = record["recipient"]
    recipients = recipient if isinstance(recipient, str) else ",".join(recipient)
    return (
        f"{record['event_time']} {record['type']:<16} {record['id']} queue={record['queue']} "
        f"rcpt={recipients} site={record['site'] or '-'} attempts={record['num_attempts']} "
        f"{status} {response['content']}"
    )


def kumo_json_line(record: dict[str, Any]) -> str:
    """One record as KumoMTA's logs write it (serde_json: compact, non-ASCII as is)."""
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


async def print_logs(args: argparse.Namespace) -> int:
    bootstrap, topics = kafka_target(args)
    wanted = set(args.type or ())
    async for replayed in replay_topic(bootstrap, topics.log.name, follow=args.follow):
        if replayed.value is None:
            continue
        try:
            _, value = decode(replayed.value, expected="LogRecord")
        except DecodeError as error:
            print(f"logs: offset {replayed.offset}: undecodable record: {error}", file=sys.stderr)
            continue
        record = to_kumo_json(LogRecord.from_avro(value))
        if (wanted and record["type"] not in wanted) or (args.id and record["id"] != args.id):
            continue
        print(kumo_json_line(record) if args.json else render_line(record), flush=True)
    return 0


def logs_command(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(print_logs(args))
    except LookupError as error:
        print(
            f"relaystream logs: {error}; is this the right --bootstrap/--prefix?", file=sys.stderr
        )
        return 1
