"""The consumer every service uses: concurrent handlers, commits that never skip unfinished work.

    async with EventConsumer(bootstrap, group_id="delivery", topics=[attempts],
                             decode=codec.decode, reject_on=(DecodeError,),
                             dead_letters=dead_letters, client_id="delivery") as consumer:
        await consumer.run(handle, concurrency=64, stop=runtime.shutdown_requested)

- Auto-commit is off. Records are handed to up to `concurrency` handler tasks at once and may
  finish in any order; `offsets.PartitionOffsets` keeps the commit of each partition at the
  lowest unfinished offset, so a crash redelivers unfinished records (at-least-once) and never
  skips one. With `concurrency=1` records are handled strictly in order.
- A record whose value fails to decode (the decoder raises `RecordRejected` or one of
  `reject_on`), or whose handler raises `RecordRejected`, goes to the dead-letter topic and
  counts as finished. Any other handler exception is a failure of the service: intake stops,
  finished work is committed, and `run` raises it (the process exits and is restarted; the
  failed record is redelivered).
- On a rebalance the revoked partitions stop taking new records, their in-flight records get
  `rebalance_drain_seconds` to finish, then what is safe is committed and their state dropped.
  Kafka's rebalances are eager in aiokafka: every partition is revoked and reassigned, and
  fetching restarts from the committed offsets. What is left of a batch fetched before or
  during a rebalance is not handed out; its partitions that are still assigned are rewound to
  their committed offsets (`rewind.rewind_to_committed`), so no record is skipped.
- When `stop` is set, intake stops, in-flight records finish, the safe offsets are committed and
  `run` returns. If `run` is cancelled instead (grace period over), in-flight handlers are
  cancelled and only what finished is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from . import metrics
from .dead_letter import DeadLetters, PoisonRecord, RecordRejected
from .offsets import PartitionOffsets
from .rewind import rewind_to_committed

log = logging.getLogger(__name__)

V = TypeVar("V")

# Every service's group members use these. With static membership (group.instance.id) a member
# killed without leaving keeps its partitions until its session expires, unless it rejoins
# under the same id first, which is what makes a restart take its partitions back without a
# rebalance. 30 s covers a process restart (about a second) and Kubernetes' first 10 s restart
# back-off; a member that never comes back (a lost node) leaves its partitions idle that long.
SESSION_TIMEOUT_MS = 30_000
HEARTBEAT_INTERVAL_MS = 3_000


@dataclass(frozen=True)
class ConsumedRecord(Generic[V]):
    """One record as a handler sees it; `value` is None for a tombstone."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: V | None
    raw_value: bytes | None
    timestamp_ms: int
    headers: tuple[tuple[str, bytes], ...]


Handler = Callable[[ConsumedRecord[V]], Awaitable[None]]


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, owner: EventConsumer[Any]) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._owner._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._owner._on_assigned(set(assigned))


class EventConsumer(Generic[V]):
    """A consumer-group member that hands decoded records to a handler; see the module doc."""

    def __init__(
        self,
        bootstrap: str,
        *,
        group_id: str,
        topics: Sequence[str],
        decode: Callable[[bytes], V],
        client_id: str,
        reject_on: tuple[type[Exception], ...] = (),
        dead_letters: DeadLetters | None = None,
        group_instance_id: str | None = None,
        commit_interval_seconds: float = 1.0,
        rebalance_drain_seconds: float = 10.0,
        max_poll_records: int = 500,
        session_timeout_ms: int = SESSION_TIMEOUT_MS,
        heartbeat_interval_ms: int = HEARTBEAT_INTERVAL_MS,
        max_partition_fetch_bytes: int = 1024 * 1024,
        on_assigned: Callable[[frozenset[TopicPartition]], None] | None = None,
        on_revoked: Callable[[frozenset[TopicPartition]], Awaitable[None]] | None = None,
    ) -> None:
        self._group = group_id
        self._on_assigned_hook = on_assigned
        # Awaited after the revoked partitions' in-flight records drained, before the
        # rebalance goes on: what the member must give up before another may take over.
        self._on_revoked_hook = on_revoked
        self._topics = list(topics)
        self._decode = decode
        self._reject_on = reject_on
        self._dead_letters = dead_letters
        self._commit_interval = commit_interval_seconds
        self._drain_seconds = rebalance_drain_seconds
        self._max_poll_records = max_poll_records
        self._consumer: Any = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group_id,
            group_instance_id=group_instance_id,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # Ingest and routing write in Kafka transactions; never act on an aborted record.
            isolation_level="read_committed",
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=heartbeat_interval_ms,
            max_partition_fetch_bytes=max_partition_fetch_bytes,
        )
        # Per assigned partition: the offsets of its current assignment. Replaced on every
        # rebalance; a handler finishing after its partition was revoked updates a dropped one.
        self._states: dict[TopicPartition, PartitionOffsets] = {}
        self._tasks: dict[TopicPartition, set[asyncio.Task[None]]] = {}
        self._epoch = 0
        self._joined = False
        self._caught_up_epoch = -1
        self._failure: BaseException | None = None
        self._wake = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._consumer.subscribe(self._topics, listener=_Listener(self))
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- the processing loop --------------------------------------------------------------

    async def run(
        self,
        handler: Handler[V],
        *,
        concurrency: int = 1,
        stop: asyncio.Event | None = None,
    ) -> None:
        """Hand records to `handler` until `stop` is set (or a handler fails); then drain."""
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        stop = stop if stop is not None else asyncio.Event()
        slots = asyncio.Semaphore(concurrency)
        last_commit = time.monotonic()
        try:
            while not stop.is_set() and self._failure is None:
                # Taken before the fetch: a rebalance during it may hand back records of the
                # new assignment, which would move its positions past what is then dropped.
                epoch = self._epoch
                batch = await self._fetch(stop)
                dropped: set[TopicPartition] = set()
                for tp, records in batch.items():
                    for record in records:
                        await slots.acquire()
                        state = self._states.get(tp)
                        # A rebalance since the fetch (or while we waited for a slot): the
                        # rest of this batch is stale.
                        if epoch != self._epoch or state is None or self._failure is not None:
                            slots.release()
                            dropped.add(tp)
                            break
                        state.started(record.offset)
                        self._spawn(tp, state, record, handler, slots)
                if dropped and self._failure is None:
                    await rewind_to_committed(self._consumer, dropped, group=self._group)
                self._update_lag()
                if time.monotonic() - last_commit >= self._commit_interval:
                    await self.commit()
                    last_commit = time.monotonic()
            await self._drain()
        except asyncio.CancelledError:
            await self._cancel_in_flight()
            raise
        finally:
            # Whatever happened, commit what finished; the rest is redelivered.
            await self.commit()
        if self._failure is not None:
            raise self._failure

    async def _fetch(self, stop: asyncio.Event) -> dict[TopicPartition, list[Any]]:
        """The next batch, or nothing once `stop` is set or a handler failed."""
        fetch = asyncio.ensure_future(
            self._consumer.getmany(timeout_ms=200, max_records=self._max_poll_records)
        )
        stopping = asyncio.ensure_future(stop.wait())
        self._wake.clear()
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({fetch, stopping, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            woken.cancel()
        if not fetch.done():
            # Records fetched by a cancelled getmany stay in aiokafka's buffer (not consumed).
            fetch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fetch
            return {}
        result: dict[TopicPartition, list[Any]] = fetch.result()
        return result

    def _spawn(
        self,
        tp: TopicPartition,
        state: PartitionOffsets,
        record: Any,
        handler: Handler[V],
        slots: asyncio.Semaphore,
    ) -> None:
        task = asyncio.create_task(self._process(state, record, handler))
        tasks = self._tasks.setdefault(tp, set())
        tasks.add(task)
        metrics.RECORDS_IN_FLIGHT.labels(self._group).inc()

        def done(finished: asyncio.Task[None]) -> None:
            tasks.discard(finished)
            slots.release()
            metrics.RECORDS_IN_FLIGHT.labels(self._group).dec()

        task.add_done_callback(done)

    async def _process(self, state: PartitionOffsets, record: Any, handler: Handler[V]) -> None:
        try:
            rejection = None
            try:
                value = None if record.value is None else self._decode(record.value)
                await handler(
                    ConsumedRecord(
                        topic=record.topic,
                        partition=record.partition,
                        offset=record.offset,
                        key=record.key,
                        value=value,
                        raw_value=record.value,
                        timestamp_ms=record.timestamp,
                        headers=tuple(record.headers or ()),
                    )
                )
            except RecordRejected as rejected:
                rejection = rejected
            except self._reject_on as error:
                rejection = RecordRejected(str(error) or type(error).__name__, "decode")
            if rejection is not None:
                await self._dead_letter(record, rejection)
            state.finished(record.offset)
            metrics.CONSUMED_RECORDS.labels(self._group, record.topic).inc()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.exception(
                "handler failed: stopping intake",
                extra={"topic": record.topic, "partition": record.partition},
            )
            if self._failure is None:
                self._failure = error
            self._wake.set()

    async def _dead_letter(self, record: Any, rejection: RecordRejected) -> None:
        if self._dead_letters is None:
            raise RuntimeError(
                f"record rejected but this consumer has no dead-letter topic: {rejection.reason}"
            ) from rejection
        poison = PoisonRecord(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
        )
        await self._dead_letters.send(poison, rejection, group=self._group)

    async def _drain(self) -> None:
        tasks = [task for tasks in self._tasks.values() for task in tasks]
        if tasks:
            log.info("waiting for in-flight records", extra={"in_flight": len(tasks)})
            await asyncio.wait(tasks)

    async def _cancel_in_flight(self) -> None:
        tasks = [task for tasks in self._tasks.values() for task in tasks]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    # -- commits and rebalances -----------------------------------------------------------

    async def commit(self, partitions: set[TopicPartition] | None = None) -> None:
        """Commit the safe offset of each (or each given) assigned partition that moved."""
        offsets = {
            tp: offset
            for tp, state in self._states.items()
            if (partitions is None or tp in partitions)
            and (offset := state.pending_commit()) is not None
        }
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except Exception as error:
            # A rebalance in progress or a lost member: the records are redelivered, which
            # at-least-once allows; the next commit tries again.
            metrics.COMMITS.labels(self._group, "failed").inc()
            log.warning("commit failed", extra={"error": repr(error)})
            return
        metrics.COMMITS.labels(self._group, "ok").inc()
        for tp, offset in offsets.items():
            state = self._states.get(tp)
            if state is not None:
                state.committed(offset)

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        self._epoch += 1
        tasks = [task for tp in revoked for task in self._tasks.get(tp, ())]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self._drain_seconds)
            if pending:
                log.warning(
                    "records still in flight at rebalance: they will be redelivered",
                    extra={"in_flight": len(pending)},
                )
        if self._on_revoked_hook is not None:
            await self._on_revoked_hook(frozenset(revoked))
        await self.commit(revoked)
        for tp in revoked:
            self._states.pop(tp, None)
            self._tasks.pop(tp, None)
            with contextlib.suppress(KeyError):
                metrics.CONSUMER_LAG.remove(self._group, tp.topic, str(tp.partition))

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        self._epoch += 1
        self._joined = True
        for tp in assigned:
            self._states[tp] = PartitionOffsets()
        if self._on_assigned_hook is not None:
            self._on_assigned_hook(frozenset(assigned))
        log.info(
            "partitions assigned",
            extra={"partitions": sorted(f"{tp.topic}:{tp.partition}" for tp in assigned)},
        )

    # -- readiness and lag ----------------------------------------------------------------

    @property
    def joined(self) -> bool:
        """True once the group gave this member its first assignment."""
        return self._joined

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self._states)

    async def caught_up(self) -> bool:
        """True once this member joined and read every assigned partition to its end.

        It stays true until the next rebalance: a later backlog is work, not unreadiness.
        """
        if not self._joined:
            return False
        if self._caught_up_epoch == self._epoch:
            return True
        epoch = self._epoch
        assigned = list(self._states)
        if assigned:
            ends = await self._consumer.end_offsets(assigned)
            for tp in assigned:
                try:
                    position = await asyncio.wait_for(self._consumer.position(tp), 1.0)
                except Exception:
                    return False
                if position < ends[tp]:
                    return False
        if epoch == self._epoch:
            self._caught_up_epoch = epoch
        return True

    def _update_lag(self) -> None:
        for tp, state in self._states.items():
            end = self._consumer.highwater(tp)
            next_commit = state.committable()
            if end is not None and next_commit is not None:
                lag = max(0, end - next_commit)
                metrics.CONSUMER_LAG.labels(self._group, tp.topic, str(tp.partition)).set(lag)
