"""`relaystream queues`: every scheduled queue, read from the topics (no service needed).

    queues [--json]             queue, messages, oldest message age, next due time, config
                                source (policy, or override: domain / queue), suspension
    queues show NAME [--json]   the queue's messages: id, recipient, attempts, due, age, last
                                response

Computed by reading the compacted `queued` topic in full (the scheduler's rebuild reader), and
the `queue-config` and `admin` topics: it sees every partition, whichever instance owns it.
Messages being delivered right now still count (they stay queued until their outcome).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..core.domain.admin_rules import AdminAction, AdminRuleSet
from ..core.domain.durations import format_duration
from ..core.domain.queue_name import QueueName
from ..core.events.codec import decode
from ..core.kafka.admin_commands import read_rules
from ..core.kafka.producer import EventProducer
from ..core.kafka.queue_config_store import read_overrides
from ..scheduling.rebuild import read_spool, resolve_moves
from ..scheduling.spool_reader import SpoolReader
from ..scheduling.state import SpoolEntry
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


def _iso(millis: int) -> str:
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat().replace("+00:00", "Z")


def _age(millis: int) -> str:
    return format_duration(timedelta(seconds=max(0, millis) // 1000))


@dataclass
class SpoolView:
    entries: list[SpoolEntry]
    overrides: set[str]
    rules: AdminRuleSet
    now_ms: int


async def _read(bootstrap: str, args: argparse.Namespace) -> tuple[SpoolView, SpoolReader]:
    _, topics = kafka_target(args)
    queued = topics.queued.name
    async with EventProducer(bootstrap, client_id=CLIENT_ID) as producer:
        partitions = await producer.partitions_for(queued)
    snapshot = await read_spool(bootstrap, queued, range(partitions), client_id=CLIENT_ID)
    reader = SpoolReader(bootstrap, queued, client_id=CLIENT_ID)
    await reader.start()
    await resolve_moves(snapshot, reader.fetch)
    overrides = await read_overrides(bootstrap, topics.queue_config.name)
    rules = await read_rules(bootstrap, topics.admin.name)
    now = int(datetime.now(UTC).timestamp() * 1000)
    return SpoolView(list(snapshot.entries.values()), set(overrides), rules, now), reader


def _config_source(queue: str, overrides: set[str]) -> str:
    # As the scheduler merges them: the domain's override, then the exact queue name's (a
    # bare-domain queue has only the one).
    domain = QueueName.parse(queue).domain
    sources = []
    if domain in overrides:
        sources.append("domain")
    if queue != domain and queue in overrides:
        sources.append("queue")
    return "override:" + "+".join(sources) if sources else "policy"


def queue_rows(view: SpoolView) -> list[dict[str, Any]]:
    """One summary per scheduled queue, by name."""
    by_queue: dict[str, list[SpoolEntry]] = {}
    for entry in view.entries:
        by_queue.setdefault(entry.queue, []).append(entry)
    rows = []
    for queue in sorted(by_queue):
        entries = by_queue[queue]
        suspension = view.rules.matching(AdminAction.SUSPEND, queue, view.now_ms)
        bounce = view.rules.matching(AdminAction.BOUNCE, queue, view.now_ms)
        rows.append(
            {
                "queue": queue,
                "count": len(entries),
                "oldest_age_seconds": (view.now_ms - min(e.created_at for e in entries)) // 1000,
                "next_due": _iso(min(e.due_at for e in entries)),
                "config_source": _config_source(queue, view.overrides),
                "suspended": None
                if suspension is None
                else {
                    "id": suspension.id,
                    "reason": suspension.reason,
                    "expires": _iso(suspension.expires_at),
                },
                "bouncing": None if bounce is None else {"id": bounce.id, "reason": bounce.reason},
            }
        )
    return rows


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
    bootstrap, _ = kafka_target(args)
    view, reader = await _read(bootstrap, args)
    await reader.stop()
    return queue_rows(view)


async def _show(args: argparse.Namespace) -> list[dict[str, Any]]:
    bootstrap, _ = kafka_target(args)
    view, reader = await _read(bootstrap, args)
    try:
        entries = sorted((e for e in view.entries if e.queue == args.name), key=lambda e: e.due_at)
        records = await reader.fetch((e.partition, e.offset) for e in entries) if entries else {}
    finally:
        await reader.stop()
    rows = []
    for entry in entries:
        record = records.get((entry.partition, entry.offset))
        message: dict[str, Any] = {}
        if record is not None and record.value is not None:
            _, message = decode(record.value, "QueuedMessage")
        last = message.get("last_response")
        rows.append(
            {
                "id": entry.id,
                "recipient": message.get("recipient"),
                "attempts": entry.attempts,
                "due": _iso(entry.due_at),
                "age_seconds": (view.now_ms - entry.created_at) // 1000,
                "last_response": None
                if last is None
                else f"{last['code']} {_enhanced(last)}{last['content']}",
            }
        )
    return rows


def _enhanced(response: dict[str, Any]) -> str:
    code = response.get("enhanced_code")
    return "" if code is None else f"{code['class']}.{code['subject']}.{code['detail']} "


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
