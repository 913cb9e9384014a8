"""`relaystream audit why ID`: why one message went where it went, from what the topics hold.

The decision is looked up first, in the one `decisions` partition its id hashes to; its
reception time then bounds the reads of `accepted` (minutes around it, stopped at the record),
`log` and the `attempts` partitions of the message's queues (from an hour before it), so a
lookup reads little more than one partition of `decisions`, whatever the size of the others.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from ..core.audit.message_history import MessageHistory, timeline
from ..core.events.codec import DecodeError, decode
from ..core.kafka.admin import describe_topics
from ..core.kafka.message_records import ALL_PARTITIONS, message_records
from ..core.kafka.queue_config_store import ConfigChange, config_history
from ..core.kafka.replay import ReplayedRecord
from ..core.kafka.topics import TopicCatalog, partition_for_queue
from .common import add_kafka_options, kafka_target

EXIT_NOT_FOUND = 1
# Records after the reception are stamped by other hosts' clocks (CreateTime): they are read
# from this long before the recorded reception, so a clock that lags by less loses nothing.
CLOCK_SKEW_ALLOWANCE = timedelta(hours=1)
# `accepted` spreads a message's records over every partition, and carries the mail: it is
# read only around the reception, which ingest stamps with the clock that stamps the record,
# just before it writes it (a minute's slack for a clock stepped back, ten for a slow write).
ACCEPTED_BEFORE = timedelta(minutes=1)
ACCEPTED_AFTER = timedelta(minutes=10)
# A message without a decision is looked for in `accepted` over this last stretch only: older
# and unrouted would be an outage, and reading a week of mail for an unknown id would be slow.
UNROUTED_LOOKBACK = timedelta(hours=1)


def register(commands: Any) -> argparse.ArgumentParser:
    """Adds the `why` parser to the audit's subcommands; the caller sets its handler."""
    why: argparse.ArgumentParser = commands.add_parser(
        "why",
        help="why one message went where it went: reception, decision, overrides, attempts",
        description="Prints what was recorded about one message id, in time order: the "
        "reception (the policy that ran at ingest, its name, hash and the handler's inputs), "
        "the routing decision (outcome, queue, reception stage, policy), the queue-config "
        "overrides in force when it was decided and when each attempt was released, each "
        "attempt's queue config, site, egress pool and source, outcome and response, and the "
        "final disposition. A message without a decision is looked for in the last hour of "
        "`accepted` only. Exit 1 when no record of the id (and --recipient) is found.",
    )
    why.add_argument("message_id", metavar="ID", help="the message id (32 hex digits)")
    why.add_argument("--recipient", help="only if the message is for this recipient")
    why.add_argument("--json", action="store_true", help="one JSON object")
    add_kafka_options(why)
    return why


def _decoded(records: Sequence[ReplayedRecord], schema: str) -> list[dict[str, Any]]:
    values = []
    for record in records:
        if record.value is None:
            continue  # a tombstone of a compacted topic
        try:
            values.append(decode(record.value, expected=schema)[1])
        except DecodeError as error:
            print(
                f"audit why: {record.topic} {record.partition}/{record.offset}: {error}",
                file=sys.stderr,
            )
    return values


def _first(records: Sequence[ReplayedRecord], schema: str) -> dict[str, Any] | None:
    decoded = _decoded(records, schema)
    return decoded[0] if decoded else None


async def _config_changes(bootstrap: str, topic: str) -> list[ConfigChange]:
    return [change async for change in config_history(bootstrap, topic)]


async def _attempt_requests(
    bootstrap: str, topics: TopicCatalog, message_id: str, queues: set[str], since: datetime | None
) -> list[dict[str, Any]]:
    if not queues:
        return []
    name = topics.attempts.name
    described = await describe_topics(bootstrap, [name])
    if name not in described:
        return []
    count = described[name].partitions
    partitions = {partition_for_queue(queue, count) for queue in queues}
    records = await message_records(bootstrap, name, message_id, partitions=partitions, since=since)
    requests = _decoded(records, "DeliveryRequest")
    for request in requests:
        request.pop("content", None)  # the mail itself is no part of the answer
    return requests


async def find_history(bootstrap: str, topics: TopicCatalog, message_id: str) -> MessageHistory:
    decisions = _decoded(
        await message_records(bootstrap, topics.decisions.name, message_id), "RoutingDecision"
    )
    if not decisions:
        # Not routed (yet): only `accepted` can hold it, and only as recently as routing lags;
        # a log record or an attempt comes after a decision, which compaction never removes.
        accepted_records = await message_records(
            bootstrap,
            topics.accepted.name,
            message_id,
            partitions=ALL_PARTITIONS,
            since=datetime.now(UTC) - UNROUTED_LOOKBACK,
            first_only=True,
        )
        return MessageHistory(message_id, accepted=_first(accepted_records, "MessageAccepted"))
    decision = decisions[-1]
    received_at = decision["received_at"]
    since = received_at - CLOCK_SKEW_ALLOWANCE
    accepted_records, log_records, changes = await asyncio.gather(
        message_records(
            bootstrap,
            topics.accepted.name,
            message_id,
            partitions=ALL_PARTITIONS,
            since=received_at - ACCEPTED_BEFORE,
            stop_at=received_at + ACCEPTED_AFTER,
            first_only=True,
        ),
        message_records(bootstrap, topics.log.name, message_id, since=since),
        _config_changes(bootstrap, topics.queue_config.name),
    )
    logs = sorted(_decoded(log_records, "LogRecord"), key=lambda log: log["timestamp"])
    history = MessageHistory(
        message_id,
        accepted=_first(accepted_records, "MessageAccepted"),
        decision=decision,
        log_records=logs,
        config_changes=changes,
    )
    history.requests = await _attempt_requests(
        bootstrap, topics, message_id, history.queues(), since
    )
    return history


def _same_address(a: str, b: str) -> bool:
    # The local part is the recipient's to interpret; the domain compares without ASCII case.
    local_a, _, domain_a = a.rpartition("@")
    local_b, _, domain_b = b.rpartition("@")
    return local_a == local_b and domain_a.lower() == domain_b.lower()


async def explain(args: argparse.Namespace) -> int:
    bootstrap, topics = kafka_target(args)
    history = await find_history(bootstrap, topics, args.message_id)
    wanted = args.recipient
    if not history.found or (
        wanted is not None
        and not any(_same_address(wanted, found) for found in history.recipients())
    ):
        for_whom = "" if wanted is None else f" for {wanted}"
        print(
            f"relaystream audit why: message {args.message_id}{for_whom} not found: no "
            f"decision in {topics.decisions.name}, and not in the last hour of "
            f"{topics.accepted.name}",
            file=sys.stderr,
        )
        return EXIT_NOT_FOUND
    answer = history.to_json()
    if args.json:
        print(json.dumps(answer, ensure_ascii=False, sort_keys=True))
    else:
        print("\n".join(timeline(answer)))
    return 0
