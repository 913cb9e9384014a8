"""The scheduled queues as operators see them, read from the topics (no service needed).

`read_view` reads the compacted `queued` topic in full (every partition, whichever scheduler
owns it, as its rebuild does) and the `queue-config` and `admin` topics; `queue_rows` sums it
up per queue, `queue_messages` lists one queue's messages. Messages being delivered right now
still count (they stay queued until their outcome). `relaystream queues` prints these.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..domain.admin_rules import AdminAction, AdminRuleSet
from ..domain.durations import iso_from_millis
from ..domain.queue_name import QueueName
from ..events.codec import decode
from ..kafka.admin_commands import read_rules
from ..kafka.producer import EventProducer
from ..kafka.queue_config_store import read_overrides
from ..kafka.topics import TopicCatalog
from .entry import SpoolEntry
from .reader import SpoolReader
from .snapshot import read_spool, resolve_moves


@dataclass
class SpoolView:
    entries: list[SpoolEntry]
    overrides: set[str]
    rules: AdminRuleSet
    now_ms: int


async def read_view(
    bootstrap: str, topics: TopicCatalog, *, client_id: str
) -> tuple[SpoolView, SpoolReader]:
    """The spool, overrides and rules now, and a started reader of the spool (to stop)."""
    queued = topics.queued.name
    async with EventProducer(bootstrap, client_id=client_id) as producer:
        partitions = await producer.partitions_for(queued)
    snapshot = await read_spool(bootstrap, queued, range(partitions), client_id=client_id)
    reader = SpoolReader(bootstrap, queued, client_id=client_id)
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
                "next_due": iso_from_millis(min(e.due_at for e in entries)),
                "config_source": _config_source(queue, view.overrides),
                "suspended": None
                if suspension is None
                else {
                    "id": suspension.id,
                    "reason": suspension.reason,
                    "expires": iso_from_millis(suspension.expires_at),
                },
                "bouncing": None if bounce is None else {"id": bounce.id, "reason": bounce.reason},
            }
        )
    return rows


async def queue_messages(view: SpoolView, reader: SpoolReader, queue: str) -> list[dict[str, Any]]:
    """The messages of `queue`, by due time."""
    entries = sorted((e for e in view.entries if e.queue == queue), key=lambda e: e.due_at)
    records = await reader.fetch((e.partition, e.offset) for e in entries) if entries else {}
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
                "due": iso_from_millis(entry.due_at),
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
