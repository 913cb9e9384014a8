"""`relaystream dead-letters`: records the services could not decode or validate.

    dead-letters list [--json]
    dead-letters show ID
    dead-letters drop ID
    dead-letters reinject ID

ID is the source record's `topic/partition/offset` (the first column of `list`). `drop`
discards the record for good; `reinject` writes its original key and value back to its source
topic and partition once the cause is fixed (a record that still fails is dead-lettered again,
under its new offset). Either resolves the dead letter: it leaves the list.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from ..core.audit.render import iso_time
from ..core.kafka.dead_letter_store import (
    DeadLetterNotFound,
    StoredDeadLetter,
    as_json,
    drop_dead_letter,
    find_dead_letter,
    list_dead_letters,
    reinject_dead_letter,
)
from ..core.kafka.replay import ReplayedRecord
from .common import add_kafka_options, kafka_target, table

PREVIEW_BYTES = 256
_COLUMNS = ("ID", "SOURCE", "SERVICE", "ERROR", "REASON", "FAILED AT")
_REASON_WIDTH = 60


def _warn(record: ReplayedRecord, reason: str) -> None:
    print(
        f"dead-letters: {record.partition}/{record.offset}: unreadable dead letter: {reason}",
        file=sys.stderr,
    )


def _row(dead: StoredDeadLetter) -> tuple[str, ...]:
    reason = dead.reason if len(dead.reason) <= _REASON_WIDTH else dead.reason[:57] + "..."
    source = f"{dead.source_topic} p{dead.source_partition} @{dead.source_offset}"
    return (dead.id, source, dead.service, dead.error_type, reason, iso_time(dead.failed_at))


def _preview(data: bytes | None) -> list[str]:
    """A hex dump with the printable text beside it, at most PREVIEW_BYTES."""
    if data is None:
        return ["  (null)"]
    lines = []
    for start in range(0, min(len(data), PREVIEW_BYTES), 16):
        chunk = data[start : start + 16]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"  {start:08x}  {chunk.hex(' '):<47}  {text}")
    if len(data) > PREVIEW_BYTES:
        lines.append(f"  ... {len(data) - PREVIEW_BYTES} more bytes")
    return lines


async def list_command_async(args: argparse.Namespace) -> int:
    bootstrap, topics = kafka_target(args)
    found = await list_dead_letters(bootstrap, topics.dead_letter.name, on_undecodable=_warn)
    if args.json:
        for dead in found:
            print(json.dumps(as_json(dead), sort_keys=True))
    elif found:
        print(table([_COLUMNS, *(_row(dead) for dead in found)]))
    else:
        print("no dead letters")
    return 0


async def show_command_async(args: argparse.Namespace) -> int:
    bootstrap, topics = kafka_target(args)
    dead = await find_dead_letter(bootstrap, topics.dead_letter.name, args.id)
    fields = as_json(dead)
    for name in ("id", "source_topic", "source_partition", "source_offset", "service"):
        print(f"{name}: {fields[name]}")
    print(f"error_type: {dead.error_type}")
    print(f"reason: {dead.reason}")
    print(f"failed_at: {iso_time(dead.failed_at)}")
    key_size = "null" if dead.key is None else f"{len(dead.key)} bytes"
    print(f"key ({key_size}):")
    print("\n".join(_preview(dead.key)))
    value_size = "null" if dead.value is None else f"{len(dead.value)} bytes"
    print(f"value ({value_size}):")
    print("\n".join(_preview(dead.value)))
    return 0


async def drop_command_async(args: argparse.Namespace) -> int:
    bootstrap, topics = kafka_target(args)
    resolution = await drop_dead_letter(bootstrap, topics, args.id)
    print(f"dropped {resolution.dead_letter.id}")
    if resolution.source_write is not None:
        where = resolution.source_write
        print(f"tombstoned its key on {where.topic} p{where.partition} @{where.offset}")
    return 0


async def reinject_command_async(args: argparse.Namespace) -> int:
    bootstrap, topics = kafka_target(args)
    resolution = await reinject_dead_letter(bootstrap, topics, args.id)
    written = resolution.source_write
    assert written is not None
    print(
        f"re-injected {resolution.dead_letter.id} as "
        f"{written.topic}/{written.partition}/{written.offset}"
    )
    return 0


def _run(action: str, command: Callable[[argparse.Namespace], Coroutine[Any, Any, int]]) -> Any:
    def handler(args: argparse.Namespace) -> int:
        try:
            return asyncio.run(command(args))
        except DeadLetterNotFound as error:
            print(f"relaystream dead-letters {action}: {error}", file=sys.stderr)
            return 1
        except ValueError as error:
            print(f"relaystream dead-letters {action}: {error}", file=sys.stderr)
            return 2

    return handler


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dead-letters",
        help="list, show, drop and re-inject records the services could not process",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="dead_letters_command", metavar="ACTION", required=True)

    list_parser = commands.add_parser("list", help="the unresolved dead letters, oldest first")
    add_kafka_options(list_parser)
    list_parser.add_argument("--json", action="store_true", help="one JSON object per line")
    list_parser.set_defaults(handler=_run("list", list_command_async))

    for name, help_text, command in (
        ("show", "a dead letter with its key and a preview of its value", show_command_async),
        ("drop", "discard the record and resolve its dead letter", drop_command_async),
        (
            "reinject",
            "write the record back to its source topic and resolve its dead letter",
            reinject_command_async,
        ),
    ):
        sub = commands.add_parser(name, help=help_text)
        add_kafka_options(sub)
        sub.add_argument("id", metavar="ID", help="topic/partition/offset, as `list` shows")
        sub.set_defaults(handler=_run(name, command))
