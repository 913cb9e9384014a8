"""`relaystream queue-config`: operator overrides of queue configs, on the `queue-config` topic.

    queue-config set TARGET [--retry-interval 5m] [--mx-list ENTRY]... [--reason TEXT]
    queue-config get TARGET | list | rm TARGET

TARGET is a domain (every queue of it; normalized to lowercase A-labels) or an exact scheduled
queue name (anything with `@`, `:` or `!`, verbatim); an exact queue name's override applies
after its domain's. `set` merges the given fields into the target's current override (--replace
starts from nothing; --unset FIELD drops one so the policy's value applies again) and checks the
result with the same QueueConfig model as the policy's configs: a bad value exits 2 and publishes
nothing. --mx-list takes a host name or literal (A/AAAA only, never MX; `host:port` allowed) or
`name=addr` for the {name, addr} table that needs no DNS (`mx1.example.net=10.0.0.1:2525`);
repeat it for several hosts, in order. Durations are KumoMTA's ("5m", "1h 30m", "7 days");
rates "100/s", "5000/h". The scheduling service applies a change on its next release.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import socket
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..core.audit.queue_config_changes import (
    OVERRIDE_FIELDS,
    merged_override,
    override_fields,
    override_target,
)
from ..core.audit.render import iso_time
from ..core.domain.queue_config import QueueConfigError
from ..core.kafka.queue_config_store import (
    ConfigChange,
    publish_override,
    read_overrides,
    remove_override,
)
from .common import add_kafka_options, kafka_target

EXIT_USAGE = 2


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "queue-config",
        help="set, show and remove operator queue-config overrides",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="queue_config_command", metavar="ACTION", required=True)

    set_parser = commands.add_parser("set", help="set fields of a target's override")
    add_kafka_options(set_parser)
    set_parser.add_argument("target", metavar="DOMAIN_OR_QUEUE")
    set_parser.add_argument(
        "--mx-list",
        dest="mx_list",
        action="append",
        metavar="ENTRY",
        help="host, literal, host:port, or name=addr (no DNS); repeatable, in order",
    )
    set_parser.add_argument("--retry-interval", dest="retry_interval", metavar="DURATION")
    set_parser.add_argument("--max-retry-interval", dest="max_retry_interval", metavar="DURATION")
    set_parser.add_argument("--max-age", dest="max_age", metavar="DURATION")
    set_parser.add_argument("--max-message-rate", dest="max_message_rate", metavar="RATE")
    set_parser.add_argument("--egress-pool", dest="egress_pool", metavar="POOL")
    set_parser.add_argument(
        "--unset",
        action="append",
        default=[],
        choices=OVERRIDE_FIELDS,
        help="drop this field from the override (repeatable)",
    )
    set_parser.add_argument(
        "--replace", action="store_true", help="replace the whole override, not merge into it"
    )
    set_parser.add_argument("--reason", help="why (kept in the record, shown by audit config)")
    set_parser.add_argument("--by", help="who (default: user@host)")
    set_parser.set_defaults(handler=set_command)

    get_parser = commands.add_parser("get", help="show a target's override")
    add_kafka_options(get_parser)
    get_parser.add_argument("target", metavar="DOMAIN_OR_QUEUE")
    get_parser.set_defaults(handler=get_command)

    list_parser = commands.add_parser("list", help="every override in force")
    add_kafka_options(list_parser)
    list_parser.add_argument("--json", action="store_true", help="one JSON object per line")
    list_parser.set_defaults(handler=list_command)

    rm_parser = commands.add_parser("rm", help="remove a target's override (a tombstone)")
    add_kafka_options(rm_parser)
    rm_parser.add_argument("target", metavar="DOMAIN_OR_QUEUE")
    rm_parser.set_defaults(handler=rm_command)


def _override_json(change: ConfigChange) -> dict[str, Any]:
    return {
        "target": change.target,
        "config": change.config,
        "updated_at": iso_time(change.at),
        "updated_by": change.updated_by,
        "reason": change.reason,
    }


def _warn_undecodable(record: Any, reason: str) -> None:
    print(f"queue-config: {record.partition}/{record.offset}: {reason}", file=sys.stderr)


async def _current(args: argparse.Namespace) -> tuple[str, str, dict[str, ConfigChange]]:
    bootstrap, topics = kafka_target(args)
    topic = topics.queue_config.name
    overrides = await read_overrides(bootstrap, topic, on_undecodable=_warn_undecodable)
    return bootstrap, topic, overrides


async def set_override(args: argparse.Namespace) -> int:
    target = override_target(args.target)
    changes = override_fields(vars(args))
    if not changes and not args.unset:
        raise QueueConfigError("nothing to set: give at least one field option or --unset")
    bootstrap, topic, overrides = await _current(args)
    existing = overrides.get(target)
    base = None if args.replace or existing is None else existing.config
    config = merged_override(base, changes, args.unset)
    updated_by = args.by or f"{getpass.getuser()}@{socket.gethostname()}"
    await publish_override(
        bootstrap,
        topic,
        target,
        config,
        updated_by=updated_by,
        reason=args.reason,
        updated_at=datetime.now(UTC),
    )
    print(json.dumps({"target": target, "config": config}, sort_keys=True))
    return 0


async def get_override(args: argparse.Namespace) -> int:
    target = override_target(args.target)
    _, _, overrides = await _current(args)
    change = overrides.get(target)
    if change is None:
        print(f"queue-config get: no override for {target!r}", file=sys.stderr)
        return 1
    print(json.dumps(_override_json(change), sort_keys=True, indent=2))
    return 0


async def list_overrides(args: argparse.Namespace) -> int:
    _, _, overrides = await _current(args)
    for target in sorted(overrides):
        change = overrides[target]
        if args.json:
            print(json.dumps(_override_json(change), sort_keys=True))
        else:
            config = json.dumps(change.config, sort_keys=True)
            print(f"{target}  {config}  ({iso_time(change.at)} by {change.updated_by})")
    return 0


async def rm_override(args: argparse.Namespace) -> int:
    target = override_target(args.target)
    bootstrap, topic, overrides = await _current(args)
    if target not in overrides:
        print(f"queue-config rm: no override for {target!r}", file=sys.stderr)
        return 1
    await remove_override(bootstrap, topic, target)
    print(f"removed the override of {target}")
    return 0


def _run(action: str, coroutine_factory: Callable[[], Any]) -> int:
    try:
        code: int = asyncio.run(coroutine_factory())
    except QueueConfigError as error:
        print(f"relaystream queue-config {action}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except LookupError as error:
        print(
            f"relaystream queue-config {action}: {error}; is this the right --bootstrap/--prefix "
            "(create topics with `relaystream topics`)?",
            file=sys.stderr,
        )
        return 1
    return code


def set_command(args: argparse.Namespace) -> int:
    return _run("set", lambda: set_override(args))


def get_command(args: argparse.Namespace) -> int:
    return _run("get", lambda: get_override(args))


def list_command(args: argparse.Namespace) -> int:
    return _run("list", lambda: list_overrides(args))


def rm_command(args: argparse.Namespace) -> int:
    return _run("rm", lambda: rm_override(args))
