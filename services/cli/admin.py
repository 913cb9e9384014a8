"""`relaystream suspend|bounce|rebind` and `relaystream rules`: operator rules on the `admin` topic.

    suspend  MATCH --reason TEXT [--duration 5m | --expires ISO]
    bounce   MATCH --reason TEXT [--duration 5m | --expires ISO]
    rebind   MATCH --reason TEXT --set queue=NAME | --set routing_domain=DOMAIN [--duration 1h]
    rules list [--all] [--json]
    rules cancel ID

MATCH is `--queue NAME` (repeatable: exact scheduled queue names), or any of `--domain`,
`--campaign`, `--tenant`, `--routing-domain` (each must equal the queue name's component), or
`--everything`. Rules are published straight to Kafka (no service needed) and every scheduling
instance applies them to its own partitions: a suspension holds due messages (TransientFailure
451 4.4.4, retried with backoff), a bounce removes matching messages now and on arrival while it
lasts (AdminBounce 551 5.7.1), a rebind moves the messages queued now to the queue their new meta
names (AdminRebind, due now). `rules cancel` ends a rule early (a tombstone); the scheduling
admin HTTP API (/api/admin/*/v1) does the same over HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import socket
import sys
from datetime import UTC, datetime
from typing import Any

from ..core.domain.admin_rules import AdminAction, AdminRule, AdminRuleError
from ..core.domain.durations import DurationError, format_duration, parse_duration
from ..core.kafka.admin_commands import cancel_rule_once, new_rule, publish_rule_once, read_rules
from .admin_client import AdminApiError, AdminClient, add_client_options, follow_progress
from .common import add_kafka_options, kafka_target, table

EXIT_USAGE = 2
EXIT_NOT_FOUND = 1


def _add_match_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queue", action="append", default=[], metavar="NAME",
                        help="an exact scheduled queue name (repeatable)")  # fmt: skip
    parser.add_argument("--domain", help="the queue name's domain")
    parser.add_argument("--campaign", help="the queue name's campaign")
    parser.add_argument("--tenant", help="the queue name's tenant")
    parser.add_argument("--routing-domain", dest="routing_domain", help="the routing domain")
    parser.add_argument("--everything", action="store_true", help="every queue")
    parser.add_argument("--reason", required=True, help="logged with every affected message")
    parser.add_argument("--duration", help="how long the rule lasts (KumoMTA durations)")
    parser.add_argument("--expires", help="instead of --duration: an ISO 8601 time")
    parser.add_argument("--by", help="who (default: user@host)")
    parser.add_argument("--json", action="store_true", help="print the rule as JSON")
    add_kafka_options(parser)


def register(subparsers: Any) -> None:
    helps = {
        AdminAction.SUSPEND: "suspend matching scheduled queues (default 5 minutes)",
        AdminAction.BOUNCE: "bounce matching queued messages, and arrivals while it lasts",
        AdminAction.REBIND: "move messages queued now to the queue new meta names",
    }
    for action, text in helps.items():
        parser = subparsers.add_parser(
            action.value.lower(),
            help=text,
            description=__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_match_options(parser)
        if action is not AdminAction.SUSPEND:
            parser.add_argument(
                "--wait",
                action="store_true",
                help="then follow its progress on the scheduling admin API until nothing "
                "matching is left (a progress bar; --endpoint, --token: see bounce-list)",
            )
            parser.add_argument("--wait-timeout", type=float, default=600.0, metavar="SECONDS")
            add_client_options(parser, json_option=False)
        if action is AdminAction.REBIND:
            parser.add_argument(
                "--set",
                dest="data",
                action="append",
                default=[],
                metavar="KEY=VALUE",
                required=True,
                help="meta to set: queue=NAME or routing_domain=DOMAIN",
            )
        parser.set_defaults(handler=create_command, action=action)

    rules = subparsers.add_parser("rules", help="list and cancel operator rules")
    commands = rules.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    list_parser = commands.add_parser("list", help="the rules in force")
    add_kafka_options(list_parser)
    list_parser.add_argument("--all", action="store_true", help="expired ones too")
    list_parser.add_argument("--json", action="store_true", help="one JSON object per line")
    list_parser.set_defaults(handler=list_command)
    cancel_parser = commands.add_parser("cancel", help="end a rule now (a tombstone)")
    add_kafka_options(cancel_parser)
    cancel_parser.add_argument("id")
    cancel_parser.set_defaults(handler=cancel_command)


def rule_json(rule: AdminRule, now_ms: int) -> dict[str, Any]:
    return {**rule.listing_fields(), "active": rule.is_active(now_ms)}


def _matcher_text(rule: AdminRule) -> str:
    if rule.queues:
        return "queue " + ",".join(rule.queues)
    parts = [
        f"{name}={value}"
        for name, value in (
            ("campaign", rule.campaign),
            ("tenant", rule.tenant),
            ("domain", rule.domain),
            ("routing_domain", rule.routing_domain),
        )
        if value is not None
    ]
    return " ".join(parts) or "everything"


def _rebind_data(items: list[str]) -> dict[str, str]:
    data: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise AdminRuleError(f"--set {item!r}: expected KEY=VALUE")
        data[key] = json.dumps(value)
    return data


def build_rule(args: argparse.Namespace, now: datetime) -> AdminRule:
    """The rule the options describe; raises AdminRuleError / DurationError when invalid."""
    action: AdminAction = args.action
    matchers = (args.domain, args.campaign, args.tenant, args.routing_domain)
    if not args.everything and not args.queue and all(m is None for m in matchers):
        raise AdminRuleError("say what to match: --queue, --domain, --campaign, --tenant, "
                             "--routing-domain, or --everything")  # fmt: skip
    if args.queue and any(m is not None for m in matchers):
        raise AdminRuleError("--queue names exact queues: it cannot be combined with matchers")
    duration = parse_duration(args.duration) if args.duration else None
    expires = None
    if args.expires:
        try:
            expires = datetime.fromisoformat(args.expires.replace("Z", "+00:00"))
        except ValueError:
            raise AdminRuleError(f"--expires {args.expires!r}: not an ISO 8601 time") from None
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
    return new_rule(
        action,
        reason=args.reason,
        now=now,
        duration=duration,
        expires=expires,
        campaign=args.campaign,
        tenant=args.tenant,
        domain=args.domain,
        routing_domain=args.routing_domain,
        queues=tuple(args.queue),
        rebind_meta=_rebind_data(args.data) if action is AdminAction.REBIND else None,
        created_by=args.by or f"{getpass.getuser()}@{socket.gethostname()}",
    )


def create_command(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    try:
        rule = build_rule(args, now)
    except (AdminRuleError, DurationError) as error:
        print(f"relaystream {args.action.value.lower()}: {error}", file=sys.stderr)
        return EXIT_USAGE
    bootstrap, topics = kafka_target(args)
    asyncio.run(publish_rule_once(bootstrap, topics.admin.name, rule))
    if args.json:
        print(json.dumps(rule_json(rule, int(now.timestamp() * 1000)), sort_keys=True))
    else:
        print(rule.id)
    if getattr(args, "wait", False):
        return _wait(args, rule)
    return 0


def _wait(args: argparse.Namespace, rule: AdminRule) -> int:
    """Follows a bulk bounce or rebind on the admin API and prints what it did per queue."""
    action = rule.action.value.lower()
    client = AdminClient.from_args(args)
    try:
        entry = follow_progress(client, action, rule.id, timeout=args.wait_timeout)
    except (AdminApiError, OSError) as error:
        print(f"relaystream {action} --wait: {client.endpoint}: {error}", file=sys.stderr)
        return EXIT_NOT_FOUND
    if entry is None:
        print(f"relaystream {action} --wait: {client.endpoint} never listed {rule.id}",
              file=sys.stderr)  # fmt: skip
        return EXIT_NOT_FOUND
    count_key = "bounced" if rule.action is AdminAction.BOUNCE else "rebound"
    rows: list[tuple[str, ...]] = [("QUEUE", count_key.upper())]
    rows += [(queue, str(n)) for queue, n in sorted(entry[count_key].items())]
    print(table(rows))
    return 0 if entry["pending"] == 0 else EXIT_NOT_FOUND


def list_command(args: argparse.Namespace) -> int:
    bootstrap, topics = kafka_target(args)
    rules = asyncio.run(read_rules(bootstrap, topics.admin.name))
    now = int(datetime.now(UTC).timestamp() * 1000)
    shown = rules.all() if args.all else rules.active(now)
    for rule in shown:
        if args.json:
            print(json.dumps(rule_json(rule, now), sort_keys=True))
            continue
        left = format_duration(parse_duration(f"{rule.remaining_ms(now) // 1000}s"))
        data = " ".join(f"{k}={json.loads(v)}" for k, v in rule.rebind_meta.items())
        print(f"{rule.id}  {rule.action.value.lower():8} {_matcher_text(rule)}  "
              f"{'expires in ' + left if rule.is_active(now) else 'expired'}  "
              f"{data + '  ' if data else ''}reason: {rule.reason}")  # fmt: skip
    return 0


def cancel_command(args: argparse.Namespace) -> int:
    bootstrap, topics = kafka_target(args)
    rules = asyncio.run(read_rules(bootstrap, topics.admin.name))
    if rules.get(args.id) is None:
        print(f"relaystream rules cancel: no rule {args.id}", file=sys.stderr)
        return EXIT_NOT_FOUND
    asyncio.run(cancel_rule_once(bootstrap, topics.admin.name, args.id))
    print(f"cancelled {args.id}")
    return 0
