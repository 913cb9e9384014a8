"""The JSON log hook forwarder: what KumoMTA's `log_hooks:new_json` does, on Kafka.

It reads the log topic in a consumer group of its own (one per hook) and POSTs each record,
in KumoMTA's JSON shape, to the hook's URL: one record per request with `Content-Type:
application/json`, as KumoMTA's new_json hook sends it. A failed POST (a connection error or
any status but 2xx) is retried with a growing delay until it succeeds or the forwarder stops;
a partition's offset is committed only once every record before it was POSTed. So a crash or
a restart sends the records not yet committed again (at-least-once): a receiver may see a
record twice, never miss one.

A hook's group starts, the first time, at the records logged from then on (KumoMTA hooks the
records logged while it is configured); `start_at_beginning` sends the topic's whole history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from ..domain.log_hook import LogHookDeclaration, LogHookKind
from ..domain.log_record import LogRecord, to_kumo_json
from ..events.codec import DecodeError, decode
from ..kafka.topics import TopicCatalog

log = logging.getLogger(__name__)

# Records fetched per poll: a commit covers at most this many POSTs.
FETCH_MAX_RECORDS = 100
POLL_TIMEOUT_MS = 500


@dataclass(frozen=True)
class RetryDelays:
    """The wait after each failed POST of a record: `first_s`, doubling up to `longest_s`."""

    first_s: float = 1.0
    longest_s: float = 60.0

    def after(self, failures: int) -> float:
        return float(min(self.first_s * 2 ** max(failures - 1, 0), self.longest_s))


def hook_group_id(topics: TopicCatalog, hook: LogHookDeclaration) -> str:
    return topics.group_id(f"log-hook.{hook.name}")


class _PinTheStart(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commits, and seeks to, where a partition the group has no offset for yet starts (its
    end, or its beginning), so that a forwarder stopped before its first POST resumes there
    rather than at a later end (skipping what was logged in between)."""

    def __init__(self, consumer: AIOKafkaConsumer, at_beginning: bool) -> None:
        self._consumer = consumer
        self._at_beginning = at_beginning

    async def on_partitions_revoked(self, revoked: Any) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Any) -> None:
        fresh = [tp for tp in assigned if await self._consumer.committed(tp) is None]
        if not fresh:
            return
        if self._at_beginning:
            start = await self._consumer.beginning_offsets(fresh)
        else:
            start = await self._consumer.end_offsets(fresh)
        await self._consumer.commit(start)
        for partition, offset in start.items():
            self._consumer.seek(partition, offset)


class JsonHookForwarder:
    """Forwards the log topic to one `new_json` hook until `stop` is set."""

    def __init__(
        self,
        hook: LogHookDeclaration,
        bootstrap: str,
        topics: TopicCatalog,
        retry: RetryDelays = RetryDelays(),
        start_at_beginning: bool = False,
    ) -> None:
        if hook.kind is not LogHookKind.JSON or hook.url is None:
            raise ValueError(f"{hook.description}: only new_json hooks are forwarded")
        self.hook = hook
        self.url: str = hook.url
        self._bootstrap = bootstrap
        self._topics = topics
        self._retry = retry
        self._start_at_beginning = start_at_beginning
        self.forwarded = 0  # records POSTed successfully

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=hook_group_id(self._topics, self.hook),
            client_id=f"log-hook-{self.hook.name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest" if self._start_at_beginning else "latest",
        )
        consumer.subscribe(
            [self._topics.log.name],
            listener=_PinTheStart(consumer, self._start_at_beginning),
        )
        await consumer.start()
        try:
            async with aiohttp.ClientSession(
                headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=30),
            ) as session:
                while not stop.is_set():
                    batches = await consumer.getmany(
                        timeout_ms=POLL_TIMEOUT_MS, max_records=FETCH_MAX_RECORDS
                    )
                    for partition, records in batches.items():
                        if not await self._post_all(session, records, stop):
                            return  # stopping: what was not POSTed stays uncommitted
                        await self._commit(consumer, partition, records[-1].offset + 1)
        finally:
            await consumer.stop()

    async def _post_all(
        self, session: aiohttp.ClientSession, records: Sequence[Any], stop: asyncio.Event
    ) -> bool:
        """POSTs each record in order; False if `stop` came first."""
        for record in records:
            body = self._json_record(record.offset, record.value)
            if body is not None and not await self._post(session, body, stop):
                return False
        return True

    def _json_record(self, offset: int, value: bytes | None) -> dict[str, Any] | None:
        if value is None:
            return None
        try:
            _, decoded = decode(value, expected="LogRecord")
        except DecodeError as error:
            # Nothing can be sent for it; the record stays on the topic (relaystream logs).
            log.error(
                "log hook: undecodable log record not forwarded",
                extra={"hook": self.hook.name, "offset": offset, "error": str(error)},
            )
            return None
        return to_kumo_json(LogRecord.from_avro(decoded))

    async def _post(
        self, session: aiohttp.ClientSession, body: dict[str, Any], stop: asyncio.Event
    ) -> bool:
        failures = 0
        while not stop.is_set():
            try:
                async with session.post(self.url, json=body) as response:
                    if 200 <= response.status < 300:
                        self.forwarded += 1
                        return True
                    problem = f"HTTP {response.status} {response.reason}"
            except (aiohttp.ClientError, TimeoutError) as error:
                problem = f"{type(error).__name__}: {error}"
            failures += 1
            delay = self._retry.after(failures)
            log.warning(
                "log hook: POST failed, retrying",
                extra={
                    "hook": self.hook.name,
                    "url": self.url,
                    "problem": problem,
                    "failures": failures,
                    "retry_in_s": delay,
                },
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
        return False

    async def _commit(
        self, consumer: AIOKafkaConsumer, partition: TopicPartition, offset: int
    ) -> None:
        try:
            await consumer.commit({partition: offset})
        except (CommitFailedError, KafkaError) as error:
            # The partition moved to another member (a rebalance): it sends these again.
            log.warning(
                "log hook: commit failed; the records will be sent again",
                extra={
                    "hook": self.hook.name,
                    "partition": partition.partition,
                    "error": str(error),
                },
            )


async def forward_json_hooks(
    hooks: Sequence[LogHookDeclaration],
    bootstrap: str,
    topics: TopicCatalog,
    stop: asyncio.Event,
    retry: RetryDelays = RetryDelays(),
    start_at_beginning: bool = False,
) -> None:
    """Runs one forwarder per `new_json` hook until `stop` is set (or one fails)."""
    forwarders = [
        JsonHookForwarder(hook, bootstrap, topics, retry, start_at_beginning)
        for hook in hooks
        if hook.kind is LogHookKind.JSON
    ]
    async with asyncio.TaskGroup() as group:
        for forwarder in forwarders:
            group.create_task(forwarder.run(stop))
