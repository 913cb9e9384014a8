"""`relaystream audit`: replay the recorded routing decisions and queue-config changes.

    audit decisions   replay `decisions`, filter, print (table, jsonl or csv) and summarize
    audit verify      re-run a policy on each recorded decision's inputs, report what changes
    audit config      the history of queue-config overrides still in the `queue-config` log
    audit why ID      why one message went where it went (decision, overrides, every attempt)

Times (--since, --until) are ISO 8601 (`2026-11-24T12:00:00Z`; without an offset: UTC) or a
duration ago (`90s`, `15m`, `2h`, `3d`, `1h 30m`). --since starts each partition at the first
record stamped at or after it (Kafka's offsets_for_times); --until skips later records.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from ..core.audit.decisions import DecisionFilter, DecisionSummary
from ..core.audit.queue_config_changes import history_with_changes, override_target
from ..core.audit.render import (
    CSV_COLUMNS,
    TABLE_HEADER,
    csv_row,
    iso_time,
    json_line,
    table_line,
)
from ..core.audit.timespec import TimeSpecError, parse_time
from ..core.audit.verify import UnverifiableDecision, VerifyReport, compare, recompute
from ..core.domain.queue_config import QueueConfigError
from ..core.events.codec import DecodeError, decode
from ..core.kafka.queue_config_store import ConfigChange, config_history
from ..core.kafka.replay import ReplayedRecord, ReplayProgress, replay_topic_batches
from ..core.policy import Policy, PolicyLoadError, policy_from_file
from ..core.runtime import event_loop
from . import audit_why
from .common import add_kafka_options, kafka_target

FORMATS = ("table", "jsonl", "csv")
EXIT_USAGE = 2


def register(subparsers: Any) -> None:
    audit = subparsers.add_parser(
        "audit",
        help="replay routing decisions and queue-config changes (audit, verify a policy)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = audit.add_subparsers(dest="audit_command", metavar="WHAT", required=True)

    decisions = commands.add_parser(
        "decisions",
        help="replay the routing decisions, filtered",
        description="Prints the recorded routing decisions that match every filter given, "
        "then a summary (per outcome, queue and policy hash): on stderr in table and csv "
        'format, or as a final {"summary": true, ...} line with --format jsonl --summary. '
        "Stops at the end of the topic as it was at the start unless --follow.",
    )
    _add_replay_options(decisions)
    decisions.add_argument("--format", choices=FORMATS, default="table")
    decisions.add_argument(
        "--summary",
        action="store_true",
        help="jsonl: end with a summary object (table always prints one on stderr)",
    )
    decisions.add_argument("--follow", "-f", action="store_true", help="keep printing new ones")
    decisions.set_defaults(handler=decisions_command)

    verify = commands.add_parser(
        "verify",
        help="re-run a policy on recorded decisions and report which would change",
        description="Runs POLICY on each recorded decision's inputs (sender, recipient, "
        "reception protocol, headers, meta before) and reports decisions whose outcome, queue, "
        "rejection or meta after would differ, with totals per recorded policy hash. Under "
        "the recorded hash nothing may change. Exit 0: nothing changes; 1: some decisions "
        "change or cannot be replayed; 2: the policy cannot be loaded.",
    )
    verify.add_argument("--policy", required=True, type=Path, help="Lua or declarative policy")
    _add_replay_options(verify)
    verify.add_argument("--format", choices=("table", "jsonl"), default="table")
    verify.set_defaults(handler=verify_command)

    config = commands.add_parser(
        "config",
        help="history of queue-config overrides still in the log",
        description="Every record still on the compacted `queue-config` topic, in the order "
        "the scheduler applies them, with the fields each one changed. Compaction removes "
        "superseded records of a target (never its latest), so older changes may be missing.",
    )
    add_kafka_options(config)
    config.add_argument("--target", help="only this domain or queue name")
    config.add_argument("--format", choices=("table", "jsonl"), default="table")
    config.set_defaults(handler=config_command)

    audit_why.register(commands).set_defaults(handler=why_command)


def _add_replay_options(parser: argparse.ArgumentParser) -> None:
    add_kafka_options(parser)
    parser.add_argument("--since", help="from this time (ISO 8601 or a duration ago: 2h)")
    parser.add_argument("--until", help="up to this time (ISO 8601 or a duration ago)")
    parser.add_argument("--domain", help="recipient domain of the queue (any ASCII case)")
    parser.add_argument("--tenant")
    parser.add_argument("--campaign")
    parser.add_argument("--queue", help="exact scheduled queue name")
    parser.add_argument("--routing-domain", dest="routing_domain")
    parser.add_argument("--message-id", dest="message_id")


def _decision_filter(args: argparse.Namespace) -> DecisionFilter:
    return DecisionFilter(
        domain=args.domain,
        tenant=args.tenant,
        campaign=args.campaign,
        queue=args.queue,
        routing_domain=args.routing_domain,
        message_id=args.message_id,
    )


def _time_window(args: argparse.Namespace) -> tuple[datetime | None, datetime | None]:
    now = datetime.now(UTC)
    since = None if args.since is None else parse_time(args.since, now)
    until = None if args.until is None else parse_time(args.until, now)
    return since, until


class ProgressLine:
    """A progress line on stderr, redrawn at most every 0.2 s, only when stderr is a terminal."""

    def __init__(self, progress: ReplayProgress, stream: TextIO) -> None:
        self._progress = progress
        self._stream = stream
        self._enabled = stream.isatty()
        self._started = time.monotonic()
        self._drawn_at = 0.0

    def tick(self) -> None:
        if not self._enabled:
            return
        now = time.monotonic()
        if now - self._drawn_at < 0.2:
            return
        self._drawn_at = now
        read, total = self._progress.read, self._progress.total
        share = f" ({100 * read // total}%)" if total else ""
        speed = read / max(now - self._started, 1e-9)
        self._stream.write(f"\rreplayed {read:,}/{total:,}{share} {speed:,.0f}/s ")
        self._stream.flush()

    def clear(self) -> None:
        if self._enabled and self._drawn_at:
            self._stream.write("\r\x1b[K")
            self._stream.flush()


DecisionHandler = Callable[[dict[str, Any]], None]


async def replay_decisions(
    args: argparse.Namespace,
    handle: DecisionHandler,
    summary: DecisionSummary,
    *,
    follow: bool = False,
) -> None:
    """Replays `decisions` in the window of `args`, calling `handle` on each match.

    The filter's byte tests run before decoding, on whole record batches and then on each
    record, so a narrow filter makes few records and decodes fewer."""
    bootstrap, topics = kafka_target(args)
    since, until = _time_window(args)
    wanted = _decision_filter(args)
    progress = ReplayProgress()
    line = ProgressLine(progress, sys.stderr)
    could_match = wanted.candidate_test()
    try:
        async for batch in replay_topic_batches(
            bootstrap,
            topics.decisions.name,
            since=since,
            until=until,
            follow=follow,
            progress=progress,
            client_id="relaystream-audit",
            batch_test=wanted.batch_test(),
        ):
            for record in batch.records:
                value = record.value
                if value is None or (
                    could_match is not None and not could_match(record.key, value)
                ):
                    continue
                try:
                    _, decision = decode(value, expected="RoutingDecision")
                except DecodeError as error:
                    line.clear()
                    print(
                        f"audit: {batch.partition}/{record.offset}: undecodable: {error}",
                        file=sys.stderr,
                    )
                    continue
                if wanted.matches(decision):
                    summary.add(decision)
                    handle(decision)
            line.tick()
    finally:
        summary.read = progress.read
        line.clear()


def _decision_printer(fmt: str, out: TextIO, follow: bool) -> DecisionHandler:
    if fmt == "jsonl":

        def print_json(decision: dict[str, Any]) -> None:
            out.write(json_line(decision) + "\n")
            if follow:
                out.flush()

        return print_json
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)

        def print_csv(decision: dict[str, Any]) -> None:
            writer.writerow(csv_row(decision))
            if follow:
                out.flush()

        return print_csv
    out.write(TABLE_HEADER + "\n")

    def print_table(decision: dict[str, Any]) -> None:
        out.write(table_line(decision) + "\n")
        if follow:
            out.flush()

    return print_table


async def print_decisions(args: argparse.Namespace) -> int:
    summary = DecisionSummary()
    printer = _decision_printer(args.format, sys.stdout, args.follow)
    try:
        await replay_decisions(args, printer, summary, follow=args.follow)
    finally:
        if args.format == "jsonl":
            if args.summary:
                sys.stdout.write(json.dumps(summary.to_json()) + "\n")
        else:
            sys.stdout.flush()
            print("\n".join(summary.to_lines()), file=sys.stderr)
    return 0


def _run(command: str, coroutine_factory: Callable[[], Any]) -> int:
    try:
        # The services' loop (uvloop): a replay reads hundreds of megabytes through it.
        code: int = event_loop.run(coroutine_factory())
    except TimeSpecError as error:
        print(f"relaystream audit {command}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except LookupError as error:
        print(
            f"relaystream audit {command}: {error}; is this the right --bootstrap/--prefix?",
            file=sys.stderr,
        )
        return 1
    return code


def decisions_command(args: argparse.Namespace) -> int:
    return _run("decisions", lambda: print_decisions(args))


async def verify_decisions(args: argparse.Namespace, policy: Policy) -> int:
    report = VerifyReport(policy_hash=policy.content_hash)
    out = sys.stdout

    def check(decision: dict[str, Any]) -> None:
        try:
            recomputed = recompute(policy, decision)
        except UnverifiableDecision as error:
            report.add_unverifiable(decision)
            if args.format == "jsonl":
                out.write(json.dumps({"id": decision["id"], "unverifiable": str(error)}) + "\n")
            else:
                out.write(f"{decision['id']}  unverifiable: {error}\n")
            return
        change = compare(decision, recomputed)
        report.add(decision, change)
        if change is not None:
            if args.format == "jsonl":
                out.write(json.dumps(change.to_json()) + "\n")
            else:
                out.write(change.describe() + "\n")

    await replay_decisions(args, check, DecisionSummary())
    if args.format == "jsonl":
        out.write(json.dumps(report.to_json()) + "\n")
    else:
        out.write("\n".join(report.to_lines()) + "\n")
    return 1 if report.changed or report.unverifiable else 0


def verify_command(args: argparse.Namespace) -> int:
    try:
        policy = policy_from_file(args.policy)
    except PolicyLoadError as error:
        print(f"relaystream audit verify: {error}", file=sys.stderr)
        return EXIT_USAGE
    return _run("verify", lambda: verify_decisions(args, policy))


def _config_line(change: ConfigChange, fields: dict[str, tuple[Any, Any]]) -> str:
    who = f" by {change.updated_by}" if change.updated_by else ""
    why = f" ({change.reason})" if change.reason else ""
    described = "; ".join(
        f"{name}: {json.dumps(old)} -> {json.dumps(new)}" for name, (old, new) in fields.items()
    )
    return f"{iso_time(change.at)} {change.action:<7} {change.target}{who}{why}  {described}"


async def print_config_history(args: argparse.Namespace) -> int:
    bootstrap, topics = kafka_target(args)
    target = None if args.target is None else override_target(args.target)

    def undecodable(record: ReplayedRecord, reason: str) -> None:
        print(f"audit: {record.partition}/{record.offset}: {reason}", file=sys.stderr)

    changes = [
        change
        async for change in config_history(
            bootstrap, topics.queue_config.name, on_undecodable=undecodable
        )
    ]
    history = history_with_changes(changes)
    if args.format == "table":
        print(
            "# queue-config history: every record still in the log. Compaction removes "
            "superseded records of a target (never the latest), so older changes may be missing."
        )
    for change, fields in history:
        if target is not None and change.target != target:
            continue
        if args.format == "jsonl":
            print(
                json.dumps(
                    {
                        "at": iso_time(change.at),
                        "action": change.action,
                        "target": change.target,
                        "config": change.config,
                        "updated_by": change.updated_by,
                        "reason": change.reason,
                        "changed": {name: list(pair) for name, pair in fields.items()},
                        "partition": change.partition,
                        "offset": change.offset,
                    },
                    sort_keys=True,
                )
            )
        else:
            print(_config_line(change, fields))
    return 0


def config_command(args: argparse.Namespace) -> int:
    try:
        return _run("config", lambda: print_config_history(args))
    except QueueConfigError as error:
        print(f"relaystream audit config: {error}", file=sys.stderr)
        return EXIT_USAGE


def why_command(args: argparse.Namespace) -> int:
    return _run("why", lambda: audit_why.explain(args))
