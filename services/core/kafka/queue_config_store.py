"""Operator queue-config overrides on the compacted `queue-config` topic: publish, remove, read.

Record key and `target` are the same string (a domain or an exact queue name), so compaction
keeps the latest override per target and a tombstone (null value) removes it: this is how the
scheduling service reads the topic (services/scheduling/overrides.py). Reading replays the whole
topic outside any consumer group, up to the end offsets seen at the start.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..events.codec import DecodeError, decode, encode
from ..events.records import QueueConfigOverride
from .producer import Delivered, EventProducer
from .replay import ReplayedRecord, replay_topic

CLIENT_ID = "relaystream-queue-config"

# Called for a record that is not a readable override: (record, reason).
UndecodableHandler = Callable[[ReplayedRecord, str], None]


@dataclass(frozen=True)
class ConfigChange:
    """One record of the `queue-config` topic: an override set, or removed (a tombstone)."""

    target: str
    at: datetime  # updated_at for a set; the record's timestamp for a removal
    config: Mapping[str, Any] | None  # None: removed
    updated_by: str | None
    reason: str | None
    partition: int
    offset: int

    @property
    def action(self) -> str:
        return "removed" if self.config is None else "set"


def _ignore(record: ReplayedRecord, reason: str) -> None:
    return None


def _change_of(record: ReplayedRecord) -> ConfigChange:
    """One replayed record as a change; raises ValueError when it is not a readable one."""
    if record.value is None:
        if record.key is None:
            raise ValueError("tombstone without a key")
        return ConfigChange(
            target=record.key.decode("utf-8", "replace"),
            at=datetime.fromtimestamp(record.timestamp_ms / 1000, UTC),
            config=None,
            updated_by=None,
            reason=None,
            partition=record.partition,
            offset=record.offset,
        )
    try:
        _, override = decode(record.value, expected="QueueConfigOverride")
        config = json.loads(override["config"])
    except (DecodeError, json.JSONDecodeError) as err:
        raise ValueError(str(err)) from err
    if not isinstance(config, dict):
        raise ValueError("config is not a JSON object")
    if record.key is None or record.key.decode("utf-8", "replace") != override["target"]:
        raise ValueError(f"record key {record.key!r} is not its target {override['target']!r}")
    return ConfigChange(
        target=override["target"],
        at=override["updated_at"],
        config=config,
        updated_by=override["updated_by"],
        reason=override["reason"],
        partition=record.partition,
        offset=record.offset,
    )


async def config_history(
    bootstrap: str, topic: str, *, on_undecodable: UndecodableHandler = _ignore
) -> AsyncIterator[ConfigChange]:
    """Every change still in the log, in log order (compaction may have dropped superseded
    records of a target, never its latest)."""
    async for record in replay_topic(bootstrap, topic, client_id=CLIENT_ID):
        try:
            change = _change_of(record)
        except ValueError as err:
            on_undecodable(record, str(err))
            continue
        yield change


async def read_overrides(
    bootstrap: str, topic: str, *, on_undecodable: UndecodableHandler = _ignore
) -> dict[str, ConfigChange]:
    """The override in force per target (removed targets absent), as the scheduler sees it."""
    current: dict[str, ConfigChange] = {}

    def undecodable(record: ReplayedRecord, reason: str) -> None:
        # It replaces its key's override, as compaction and the scheduler have it.
        if record.key is not None:
            current.pop(record.key.decode("utf-8", "replace"), None)
        on_undecodable(record, reason)

    async for change in config_history(bootstrap, topic, on_undecodable=undecodable):
        if change.config is None:
            current.pop(change.target, None)
        else:
            current[change.target] = change
    return current


async def publish_override(
    bootstrap: str,
    topic: str,
    target: str,
    config: Mapping[str, Any],
    *,
    updated_by: str,
    reason: str | None,
    updated_at: datetime,
) -> Delivered:
    """Writes the override of `target` (replacing any earlier one) and waits for acks=all.
    The caller validates `config` first (`queue_config_changes.merged_override`)."""
    record: QueueConfigOverride = {
        "target": target,
        "config": json.dumps(config, sort_keys=True, separators=(",", ":")),
        "updated_at": updated_at,
        "updated_by": updated_by,
        "reason": reason,
    }
    async with EventProducer(bootstrap, client_id=CLIENT_ID) as producer:
        return await producer.send(topic, encode("QueueConfigOverride", record), key=target)


async def remove_override(bootstrap: str, topic: str, target: str) -> Delivered:
    """Writes the tombstone of `target`: its override stops applying, and compaction drops it."""
    async with EventProducer(bootstrap, client_id=CLIENT_ID) as producer:
        return await producer.send(topic, None, key=target)
