"""`relaystream queues`: every scheduled queue, read from the topics (no service needed).

    queues [--json]             queue, messages, oldest message age, next due time, config
                                source (policy, or override: domain / queue), suspension
    queues show NAME [--json]   the queue's messages: id, recipient, attempts, due, age, last
                                response

Computed by the core (core/spool/queues.py) from the compacted `queued` topic, read in full as
the scheduler's rebuild reads it, and the `queue-config` and `admin` topics: it sees every
partition, whichever instance owns it. Messages being delivered right now still count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import timedelta
from typing import Any

from ..core.domain.durations import format_duration
from ..core.spool.queues import queue_messages, queue_rows, read_view
from .common import add_kafka_options, kafka_target

CLIENT_ID = "relaystream-queues"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "queues",
        help="scheduled queues with counts, ages, config source and suspensions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_kafka_options(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.set_defaults(handler=list_command)
    commands = parser.add_subparsers(dest="queues_command", metavar="ACTION")
    show = commands.add_parser("show", help="the messages of one queue")
    add_kafka_options(show)
    show.add_argument("name", metavar="NAME")
    show.add_argument("--json", action="store_true", help="one JSON object per line")
    show.set_defaults(handler=show_command)


def _age(millis: int) -> str:
    return format_duration(timedelta(seconds=max(0, millis) // 1000))


def list_command(args: argparse.Namespace) -> int:
    rows = asyncio.run(_list(args))
    if args.json:
        for row in rows:
            print(json.dumps(row, sort_keys=True))
        return 0
    print(f"{'QUEUE':40} {'COUNT':>7} {'OLDEST':>10} {'NEXT DUE':24} {'CONFIG':22} SUSPENDED")
    for row in rows:
        suspended = row["suspended"]
        state = f"until {suspended['expires']}: {suspended['reason']}" if suspended else "-"
        if row["bouncing"]:
            state += f" (bouncing: {row['bouncing']['reason']})"
        print(f"{row['queue']:40} {row['count']:>7} {_age(row['oldest_age_seconds'] * 1000):>10} "
              f"{row['next_due']:24} {row['config_source']:22} {state}")  # fmt: skip
    return 0


async def _list(args: argparse.Namespace) -> list[dict[str, Any]]:
    bootstrap, topics = kafka_target(args)
    view, reader = await read_view(bootstrap, topics, client_id=CLIENT_ID)
    await reader.stop()
    return queue_rows(view)


async def _show(args: argparse.Namespace) -> list[dict[str, Any]]:
    bootstrap, topics = kafka_target(args)
    view, reader = await read_view(bootstrap, topics, client_id=CLIENT_ID)
    try:
        return await queue_messages(view, reader, args.name)
    finally:
        await reader.stop()


def show_command(args: argparse.Namespace) -> int:
    rows = asyncio.run(_show(args))
    if args.json:
        for row in rows:
            print(json.dumps(row, sort_keys=True))
        return 0
    print(f"{'ID':34} {'RECIPIENT':32} {'ATTEMPTS':>8} {'DUE':24} {'AGE':>10} LAST RESPONSE")
    for row in rows:
        print(f"{row['id']:34} {row['recipient'] or '?':32} {row['attempts']:>8} {row['due']:24} "
              f"{_age(row['age_seconds'] * 1000):>10} {row['last_response'] or '-'}")  # fmt: skip
    return 0
