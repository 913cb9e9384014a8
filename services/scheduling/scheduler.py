"""The scheduling loop: one consumer-group member serving its `queued` partitions.

The member reads `queued` and `outcomes` (co-partitioned: the range assignor hands out equal
partition numbers of both topics together). Each owned `queued` partition is one
`PartitionScheduler` (partition.py), built from the spool in the background when the partition
is newly assigned (rebuild.py) and kept across rebalances that leave it here (rebalance.py).
Everything runs in one loop, so the state needs no locks (the pass lock only lets a revocation
wait for the pass under way):

- `queued` records update their partition's index (this includes our own writes read back);
- `outcomes` records are applied to their partition once per (message id, attempt), their
  writes awaited, then their offsets committed (`queued` is never committed: it is the spool);
- due messages are released (releasing.py); operator rules apply (admin_actions.py).

The loop waits for records until the next thing falls due (at most a tick), and wakes early
when something else may be releasable: a new assignment, an admin rule read. A record read
already due is released in the same pass that reads it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from ..core.domain.admin_rules import AdminRuleCounts, AdminRuleSet
from ..core.domain.log_record import LogRecord
from ..core.domain.log_writer import LogWriter
from ..core.domain.retry import RandomSource
from ..core.kafka.consumer import HEARTBEAT_INTERVAL_MS, SESSION_TIMEOUT_MS
from ..core.kafka.producer import EventProducer
from ..core.kafka.ready_queue_states import ReadyQueueStates
from ..core.kafka.topic_follower import TopicFollower
from ..core.kafka.topics import TopicCatalog, deployment_topics
from ..core.policy.bounce_classifier import log_writer as settings_log_writer
from ..core.runtime.settings import Settings
from ..core.spool.entry import SpoolEntry
from ..core.spool.index import SpoolIndexDecoder
from ..core.spool.reader import SpoolReader
from . import metrics
from .admin_actions import OperatorActions
from .admin_reader import AdminRulesReader
from .config_resolver import PolicyQueueConfig, QueueConfigResolver
from .outcomes import OutcomeApplier
from .overrides import QueueConfigOverridesReader
from .owned import OwnedPartitions
from .partition import Indexed
from .rebalance import PartitionAssignment
from .rebuild import BuiltPartition, build_partition
from .releasing import Releaser
from .writes import SchedulingWrites

log = logging.getLogger(__name__)

SERVICE_NAME = "scheduling"
OUTCOME_COMMIT_INTERVAL_SECONDS = 1.0
DUE_METRIC_INTERVAL_SECONDS = 10.0

Clock = Callable[[], float]


class Scheduler:
    """The service's loop and its Kafka clients; see the module doc. Implements
    `ports.OperatorPort` and `ports.AdminApiPort`."""

    def __init__(
        self,
        settings: Settings,
        *,
        policy_config: PolicyQueueConfig,
        log_writer: LogWriter | None = None,
        random_source: RandomSource | None = None,
        clock: Clock = time.time,
    ) -> None:
        runtime = settings.runtime
        self._bootstrap = runtime.kafka_bootstrap
        self._client_id = runtime.kafka_client_id or SERVICE_NAME
        self._topics: TopicCatalog = deployment_topics(runtime.topic_prefix)
        self._lease_ms = int(settings.scheduling.in_flight_lease_seconds * 1000)
        self._tick = settings.scheduling.tick_interval_seconds
        self._clock = clock
        self.configs = QueueConfigResolver(policy_config)
        self._decoder = SpoolIndexDecoder()
        self._last_commit = 0.0
        self._consumer: Any = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            group_id=self._topics.group_id(SERVICE_NAME),
            group_instance_id=runtime.kafka_group_instance_id,
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
            # The range assignor gives each member the same partition numbers of `queued` and
            # `outcomes` (equal counts); aiokafka's default, round robin, deals both topics'
            # partitions out in turn, so a member would get outcomes of partitions it does
            # not own.
            partition_assignment_strategy=(RangePartitionAssignor,),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # `queued` is written in routing's transactions: skip aborted batches.
            isolation_level="read_committed",
            # A rebuild does not poll; give it time before the group evicts us.
            max_poll_interval_ms=30 * 60 * 1000,
            max_poll_records=2_000,
        )
        self._producer = EventProducer(
            self._bootstrap, client_id=self._client_id, linger_ms=runtime.kafka_linger_ms
        )
        self._spool = SpoolReader(
            self._bootstrap, self._topics.queued.name, client_id=f"{self._client_id}-spool"
        )
        self._writes = SchedulingWrites(
            self._producer,
            self._topics,
            service=SERVICE_NAME,
            # Without a policy's classifier configuration: the settings' alone.
            log_writer=log_writer or settings_log_writer(runtime),
        )
        self._overrides = QueueConfigOverridesReader(
            self._bootstrap,
            self._topics.queue_config.name,
            self._topics.queue_config.partitions,
            self.configs,
            client_id=f"{self._client_id}-queue-config",
            dead_letters=self._writes.dead_letters,
            group=SERVICE_NAME,
        )
        self.rules = AdminRuleSet()
        self._admin = AdminRulesReader(
            self._bootstrap,
            self._topics.admin.name,
            self._topics.admin.partitions,
            self.rules,
            client_id=f"{self._client_id}-admin",
            dead_letters=self._writes.dead_letters,
            group=SERVICE_NAME,
        )
        # Delivery's ready queues, for the admin API (read, never waited for).
        self.ready_queues = ReadyQueueStates()
        self._ready_queues = TopicFollower(
            self._bootstrap,
            self._topics.ready_queues.name,
            self._topics.ready_queues.partitions,
            self.ready_queues.apply_or_reject,
            client_id=f"{self._client_id}-ready-queues",
            what="ready queue states",
            dead_letters=self._writes.dead_letters,
            group=SERVICE_NAME,
        )
        self.partitions = OwnedPartitions()
        metrics.CURRENT.counts = self.partitions.queue_counts
        self.actions = OperatorActions(self)
        self._outcomes = OutcomeApplier(
            self.partitions,
            self._writes,
            self._spool,
            self.configs,
            now_ms=self.now_ms,
            random=random_source or random.Random().random,
        )
        self._releaser = Releaser(
            self.partitions,
            producer=self._producer,
            attempts_topic=self._topics.attempts.name,
            writes=self._writes,
            spool=self._spool,
            configs=self.configs,
            actions=self.actions,
            now_ms=self.now_ms,
        )
        # Partitions built since the active rules were last applied to them.
        self._rules_pending: set[int] = set()
        self.queued_partitions = self._topics.queued.partitions
        # Set when something may be releasable before the current wait would end.
        self._wake = asyncio.Event()
        # Held by each loop pass: a revocation waits for the pass to end.
        self._pass_lock = asyncio.Lock()
        self._assignment = PartitionAssignment(
            self._consumer,
            self._topics,
            served=self.partitions.numbers,
            seek_kept=self._next_offset,
            drop=self.partitions.drop,
            build=self._build,
            commit_outcomes=self.commit_outcomes,
            pass_lock=self._pass_lock,
            wake=self._wake,
        )

    # --- ports.OperatorPort / AdminApiPort ------------------------------------------------

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    @property
    def messages(self) -> OwnedPartitions:
        return self.partitions

    @property
    def topics(self) -> TopicCatalog:
        return self._topics

    @property
    def spool(self) -> SpoolReader:
        return self._spool

    @property
    def producer(self) -> EventProducer:
        return self._producer

    async def fetch_queued(self, entries: list[SpoolEntry]) -> dict[tuple[int, int], bytes]:
        return await self._releaser.fetch_queued(entries)

    async def decode_queued(self, entry: SpoolEntry, value: bytes) -> dict[str, Any] | None:
        return await self._writes.decode_queued(entry, value, self.partitions.forget)

    async def write_log(self, message_id: str, record: LogRecord) -> None:
        await self._writes.log(message_id, record)

    async def write_queued(self, message_id: str, value: bytes, partition: int) -> None:
        await self._writes.queued(message_id, value, partition)

    async def write_tombstone(self, entry: SpoolEntry) -> None:
        await self._writes.tombstone(entry)

    async def retry_or_expire(
        self, entry: SpoolEntry, value: bytes, outcome: dict[str, Any]
    ) -> None:
        await self._outcomes.retry_or_expire(entry, value, outcome)

    # --- partitions ------------------------------------------------------------------

    @property
    def rule_counts(self) -> AdminRuleCounts:
        return self.actions.counts

    @property
    def ready(self) -> bool:
        """Every assigned partition is built (and the group is not rebalancing)."""
        return self._assignment.ready

    async def _build(self, partition: int) -> BuiltPartition:
        return await build_partition(
            partition,
            bootstrap=self._bootstrap,
            topics=self._topics,
            lease_ms=self._lease_ms,
            now_ms=self.now_ms(),
            client_id=f"{self._client_id}-rebuild",
        )

    def _next_offset(self, partition: int) -> int:
        held = self.partitions.get(partition)
        assert held is not None, f"partition {partition} kept but not served"
        return held.next_offset

    async def _install_built(self) -> None:
        for built in self._assignment.take_built():
            part = built.scheduler
            for poison, rejection in built.poison:
                await self._writes.dead_letter(poison, rejection)
            # Old copies of messages moved by an interrupted rebind: finish the move.
            stale = await self.partitions.install(part, self._spool.fetch)
            await asyncio.gather(*(self._writes.tombstone(entry) for entry in stale))
            self._consumer.seek(
                TopicPartition(self._topics.queued.name, part.partition), part.next_offset
            )
            self._rules_pending.add(part.partition)
            metrics.note_partition_built(part.partition, part.build_seconds)
            log.info(
                "partition built",
                extra={
                    "partition": part.partition,
                    "messages": part.state.message_count,
                    "in_flight": part.state.in_flight_count,
                    "records": built.records_read,
                    "seconds": round(part.build_seconds, 3),
                },
            )
            self._assignment.resume(part.partition)

    # --- the loop ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await self._producer.start()
        await self._spool.start()
        await self._overrides.start()
        await self._admin.start()
        await self._ready_queues.start()
        self.queued_partitions = await self._producer.partitions_for(self._topics.queued.name)
        self._consumer.subscribe(
            [self._topics.queued.name, self._topics.outcomes.name], listener=self._assignment
        )
        await self._consumer.start()
        last_due_metric = 0.0
        try:
            await self._overrides.caught_up.wait()
            await self._admin.caught_up.wait()
            while not stop.is_set():
                batch = await self._poll(self._wait_ms())
                async with self._pass_lock:
                    try:
                        await self._install_built()
                        await self._handle(batch)
                        if self._assignment.serving:
                            await self._apply_admin_rules()
                            await self._releaser.release_due()
                    finally:
                        self._releaser.end_of_pass()
                # Every pass, so the last outcomes get committed too when no more arrive.
                if time.monotonic() - self._last_commit >= OUTCOME_COMMIT_INTERVAL_SECONDS:
                    await self.commit_outcomes()
                if time.monotonic() - last_due_metric > DUE_METRIC_INTERVAL_SECONDS:
                    last_due_metric = time.monotonic()
                    metrics.DUE_MESSAGES.set(self.partitions.due_count(self.now_ms()))
        finally:
            await self._assignment.stop()
            await self.commit_outcomes()
            await self._consumer.stop()
            await self._ready_queues.stop()
            await self._admin.stop()
            await self._overrides.stop()
            await self._spool.stop()
            await self._producer.stop()

    async def _poll(self, timeout_ms: int) -> dict[TopicPartition, list[Any]]:
        """Records, waiting at most `timeout_ms`, or none as soon as a wake-up is signalled."""
        if timeout_ms == 0 or self._woken():
            return await self._consumer.getmany(timeout_ms=0)  # type: ignore[no-any-return]
        fetch = asyncio.ensure_future(self._consumer.getmany(timeout_ms=timeout_ms))
        wakes = [asyncio.ensure_future(e.wait()) for e in (self._wake, self._admin.wake)]
        try:
            await asyncio.wait([fetch, *wakes], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wake in wakes:
                wake.cancel()
        if not fetch.done():
            # getmany drains records in one step after its wait: cancelled while waiting,
            # it has taken nothing, so no record is lost.
            fetch.cancel()
            try:
                await fetch
            except asyncio.CancelledError:
                return {}
        self._woken()
        return fetch.result()  # type: ignore[no-any-return]

    def _woken(self) -> bool:
        woken = self._wake.is_set() or self._admin.wake.is_set()
        self._wake.clear()
        self._admin.wake.clear()
        return woken

    def _wait_ms(self) -> int:
        """How long to wait for records: until the next thing falls due, at most a tick."""
        if not self._assignment.serving:
            return 200
        now = self.now_ms()
        wakeup = self.partitions.next_wakeup(now)
        tick_ms = int(self._tick * 1000)
        if wakeup is None:
            return tick_ms
        return max(0, min(tick_ms, wakeup - now))

    async def _handle(self, batch: dict[TopicPartition, list[Any]]) -> None:
        for tp, records in batch.items():
            partition = self.partitions.get(tp.partition)
            if partition is None:
                # Not served (not built yet): read again once it is, from where this began.
                log.warning(
                    "records of a partition not served",
                    extra={"topic": tp.topic, "partition": tp.partition},
                )
                self._consumer.seek(tp, records[0].offset)
                self._consumer.pause(tp)
                continue
            if tp.topic == self._topics.queued.name:
                for record in records:
                    await self._index(partition.index(record, self._decoder), record)
            else:
                await self._outcomes.apply(partition, records)

    async def _index(self, indexed: Indexed, record: Any) -> None:
        if indexed.rejected is not None:
            await self._writes.dead_letter_record(record, indexed.rejected)
            return
        entry = indexed.entry
        if entry is None or not self._assignment.serving:
            return
        now = self.now_ms()
        self.actions.note_arrival(entry, now)
        state = self.partitions.get(entry.partition)
        if entry.due_at <= now and state is not None and state.state.entry(entry.id) is entry:
            # Released later in this loop pass (no wake-up needed: indexing happens in the
            # loop itself), from this value rather than a fetch by offset.
            self._releaser.hold(entry, record.value)

    async def _apply_admin_rules(self) -> None:
        arrived = self._admin.take_arrived()
        built, self._rules_pending = self._rules_pending, set()
        if arrived:
            others = self.partitions.numbers() - built
            await self.actions.apply_rules(arrived, self.partitions.scope(others))
        if built:
            # Every active rule applies to the messages of a partition just built.
            active = self.rules.active(self.now_ms())
            await self.actions.apply_rules(active, self.partitions.scope(built))
        await self.actions.apply_arrivals()

    async def commit_outcomes(self) -> None:
        """Commits the applied outcomes not committed yet (also on revocation and stop).
        Outcomes apply idempotently, so committing at most every
        OUTCOME_COMMIT_INTERVAL_SECONDS only means that a new owner reads up to that much
        again; under load this saves an OffsetCommit per pass."""
        offsets = {}
        for partition in self.partitions:
            offset = partition.take_outcomes_to_commit()
            if offset is not None:
                offsets[TopicPartition(self._topics.outcomes.name, partition.partition)] = offset
        if not offsets:
            return
        self._last_commit = time.monotonic()
        try:
            await self._consumer.commit(offsets)
        except Exception as error:
            # A rebalance: the outcomes are read again by the next owner, idempotently.
            log.warning("outcome commit failed", extra={"error": repr(error)})
