"""The scheduling service: its declaration (`SERVICE`) and main; the runtime runs it.

One consumer-group member reads `queued` and `outcomes` (co-partitioned: the range assignor
hands out equal partition numbers of both topics together). Everything runs in one loop, so the
state needs no locks:

- on assignment: pause, rebuild (`rebuild.read_spool` from the beginning of the owned `queued`
  partitions; `read_recent_attempts` for releases still within their lease), seek `queued` to
  the rebuilt end offsets, resume; only then ready (/readyz) and releasing;
- `queued` records update the index (this includes our own writes read back);
- `outcomes` records are applied once per (message id, attempt), their writes awaited, then
  their offsets committed (`queued` is never committed: it is the spool, re-read on assignment);
- due messages are released: turned into DeliveryRequests carrying the resolved queue config,
  produced to `attempts` on the queue's partition. A message read from `queued` already due is
  released from the record just read ("in hand", kept only until the end of that loop pass);
  any other is fetched back by offset (`SpoolReader`). The index itself never holds content.

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
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from ..core.domain.admin_rules import AdminAction, AdminRuleSet
from ..core.domain.retry import Expire, RandomSource, decide_after_transient_failure
from ..core.events.codec import DecodeError, decode, encode
from ..core.kafka.consumer import HEARTBEAT_INTERVAL_MS, SESSION_TIMEOUT_MS
from ..core.kafka.dead_letter import DeadLetters, PoisonRecord, RecordRejected, poison_of
from ..core.kafka.producer import EventProducer
from ..core.kafka.topics import TopicCatalog, TopicRole, deployment_topics
from ..core.runtime.service import ServiceRuntime, ServiceSpec
from ..core.runtime.settings import Settings
from ..core.spool.entry import SpoolEntry
from ..core.spool.index import SpoolIndexDecoder, key_text
from ..core.spool.reader import SpoolReader
from ..core.spool.snapshot import read_spool, resolve_moves
from . import metrics
from .admin_actions import OperatorActions
from .admin_api import start_admin_api
from .admin_reader import AdminRulesReader
from .config_resolver import PolicyQueueConfig, QueueConfigResolver, message_rate_of
from .overrides import QueueConfigOverridesReader
from .policy_adapter import policy_queue_config
from .rebuild import read_recent_attempts
from .state import SchedulerState
from .throttle import MessageRate

log = logging.getLogger(__name__)

SERVICE_NAME = "scheduling"
RELEASE_BATCH = 500
OUTCOME_COMMIT_INTERVAL_SECONDS = 1.0
DUE_METRIC_INTERVAL_SECONDS = 10.0

Clock = Callable[[], float]


def _datetime(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, UTC)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._scheduler.commit_outcomes()
        self._scheduler.on_revoked()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._scheduler.on_assigned(set(assigned))


class Scheduler:
    """The service's loop and its Kafka clients; see the module doc."""

    def __init__(
        self,
        settings: Settings,
        *,
        policy_config: PolicyQueueConfig,
        random_source: RandomSource | None = None,
        clock: Clock = time.time,
    ) -> None:
        self._settings = settings
        runtime = settings.runtime
        self._bootstrap = runtime.kafka_bootstrap
        self._client_id = runtime.kafka_client_id or SERVICE_NAME
        self._topics: TopicCatalog = deployment_topics(runtime.topic_prefix)
        self._lease_ms = int(settings.scheduling.in_flight_lease_seconds * 1000)
        self._tick = settings.scheduling.tick_interval_seconds
        self._clock = clock
        self._random: RandomSource = random_source or random.Random().random
        self.state = SchedulerState(self._lease_ms)
        self.configs = QueueConfigResolver(policy_config)
        self._decoder = SpoolIndexDecoder()
        # outcomes offsets applied but not committed yet, and when we last committed.
        self._uncommitted: dict[TopicPartition, int] = {}
        self._last_commit = 0.0
        self._consumer: Any = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            group_id=self._topics.group_id(SERVICE_NAME),
            group_instance_id=runtime.kafka_group_instance_id,
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
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
        self._dead_letters = DeadLetters(
            self._producer, topic=self._topics.dead_letter.name, encode=encode, service=SERVICE_NAME
        )
        self._overrides = QueueConfigOverridesReader(
            self._bootstrap,
            self._topics.queue_config.name,
            self._topics.queue_config.partitions,
            self.configs,
            client_id=f"{self._client_id}-queue-config",
            dead_letters=self._dead_letters,
            group=SERVICE_NAME,
        )
        self.rules = AdminRuleSet()
        self._admin = AdminRulesReader(
            self._bootstrap,
            self._topics.admin.name,
            self._topics.admin.partitions,
            self.rules,
            client_id=f"{self._client_id}-admin",
            dead_letters=self._dead_letters,
            group=SERVICE_NAME,
        )
        self.actions = OperatorActions(self)
        # Set after a rebuild: every active rule is applied to the rebuilt messages.
        self._apply_all_rules = False
        self.queued_partitions = self._topics.queued.partitions
        self._assigned: set[TopicPartition] | None = None
        self._pending_assignment: set[TopicPartition] | None = None
        self.ready = False
        # Set when something may be releasable before the current wait would end.
        self._wake = asyncio.Event()
        # Values of `queued` records read in this loop pass that were due when indexed, by
        # (partition, offset): released without fetching them back. Cleared every pass, so
        # waiting messages never keep their content in memory.
        self._in_hand: dict[tuple[int, int], bytes] = {}

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def now_ms(self) -> int:
        return self._now_ms()

    @property
    def topics(self) -> TopicCatalog:
        return self._topics

    @property
    def spool(self) -> SpoolReader:
        return self._spool

    @property
    def producer(self) -> EventProducer:
        return self._producer

    # --- rebalance ---------------------------------------------------------------------

    def on_revoked(self) -> None:
        self.ready = False
        metrics.READY.set(0)
        self._assigned = None

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        # Nothing is fetched until the rebuild is done and seeks into place.
        self._consumer.pause(*assigned)
        self._pending_assignment = assigned
        self._wake.set()

    async def _rebuild(self, assigned: set[TopicPartition]) -> None:
        started = time.monotonic()
        queued = self._topics.queued.name
        partitions = {tp.partition for tp in assigned if tp.topic == queued}
        snapshot = await read_spool(
            self._bootstrap, queued, partitions, client_id=f"{self._client_id}-rebuild"
        )
        stale = await resolve_moves(snapshot, self._spool.fetch)
        state = SchedulerState(self._lease_ms)
        state.load_bulk(snapshot.entries)
        recent = await read_recent_attempts(
            self._bootstrap,
            self._topics.attempts.name,
            partitions,
            since_ms=self._now_ms() - self._lease_ms,
            client_id=f"{self._client_id}-rebuild",
        )
        for attempt in recent:
            state.note_attempt(attempt.message_id, attempt.attempt, attempt.released_at)
        if self._pending_assignment is not None:
            return  # assigned again meanwhile: start over with the new assignment
        self.state = state
        for poison, rejection in snapshot.poison:
            await self._dead_letters.send(poison, rejection, group=SERVICE_NAME)
        # Old copies of messages moved by an interrupted rebind: finish the move.
        await asyncio.gather(*(self._tombstone(entry) for entry in stale))
        self._apply_all_rules = True
        for partition, end in snapshot.end_offsets.items():
            self._consumer.seek(TopicPartition(queued, partition), end)
        self._consumer.resume(*assigned)
        self._assigned = assigned
        self.ready = True
        seconds = time.monotonic() - started
        metrics.READY.set(1)
        metrics.REBUILD_SECONDS.set(seconds)
        log.info(
            "rebuilt: releasing",
            extra={
                "partitions": sorted(partitions),
                "messages": state.message_count,
                "in_flight": state.in_flight_count,
                "seconds": round(seconds, 3),
            },
        )

    # --- the loop ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await self._producer.start()
        await self._spool.start()
        await self._overrides.start()
        await self._admin.start()
        self.queued_partitions = await self._producer.partitions_for(self._topics.queued.name)
        self._consumer.subscribe(
            [self._topics.queued.name, self._topics.outcomes.name], listener=_Listener(self)
        )
        await self._consumer.start()
        last_due_metric = 0.0
        try:
            await self._overrides.caught_up.wait()
            await self._admin.caught_up.wait()
            while not stop.is_set():
                if self._pending_assignment is not None:
                    assigned, self._pending_assignment = self._pending_assignment, None
                    await self._rebuild(assigned)
                    continue
                batch = await self._poll(self._wait_ms())
                try:
                    await self._handle(batch)
                    if self.ready:
                        await self._apply_admin_rules()
                        await self._release_due()
                finally:
                    self._in_hand.clear()
                # Every pass, so the last outcomes get committed too when no more arrive.
                if time.monotonic() - self._last_commit >= OUTCOME_COMMIT_INTERVAL_SECONDS:
                    await self.commit_outcomes()
                if time.monotonic() - last_due_metric > DUE_METRIC_INTERVAL_SECONDS:
                    last_due_metric = time.monotonic()
                    metrics.DUE_MESSAGES.set(self.state.due_count(self._now_ms()))
                metrics.QUEUED_MESSAGES.set(self.state.message_count)
                metrics.IN_FLIGHT_MESSAGES.set(self.state.in_flight_count)
        finally:
            self.ready = False
            await self.commit_outcomes()
            await self._consumer.stop()
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
        if not self.ready:
            return 200
        now = self._now_ms()
        wakeup = self.state.next_wakeup(now)
        tick_ms = int(self._tick * 1000)
        if wakeup is None:
            return tick_ms
        return max(0, min(tick_ms, wakeup - now))

    async def _handle(self, batch: dict[TopicPartition, list[Any]]) -> None:
        outcomes: list[Any] = []
        for tp, records in batch.items():
            if tp.topic == self._topics.queued.name:
                for record in records:
                    await self._apply_queued(record)
            else:
                outcomes.extend(records)
        if outcomes:
            await self._apply_outcomes(outcomes)

    async def _apply_admin_rules(self) -> None:
        arrived = self._admin.take_arrived()
        if self._apply_all_rules:
            self._apply_all_rules = False
            arrived = self.rules.active(self._now_ms())
        if arrived:
            await self.actions.apply_rules(arrived)
        await self.actions.apply_arrivals()

    async def _apply_queued(self, record: Any) -> None:
        if record.value is None:
            if record.key is not None:
                self.state.apply_tombstone(key_text(record.key), record.partition, record.offset)
            return
        try:
            entry = self._decoder.index_entry(
                record.partition, record.offset, record.key, record.value
            )
        except RecordRejected as rejected:
            # As in the rebuild: the latest record of the key replaces the key's message.
            if record.key is not None:
                self.state.apply_tombstone(key_text(record.key), record.partition, record.offset)
            await self._dead_letters.send(poison_of(record), rejected, group=SERVICE_NAME)
            return
        self.state.apply_queued(entry)
        if self.ready:
            now = self._now_ms()
            self.actions.note_arrival(entry, now)
            if entry.due_at <= now and self.state.entry(entry.id) is entry:
                # Released later in this loop pass (no wake-up needed: indexing happens in
                # the loop itself), from this value rather than a fetch by offset.
                self._in_hand[(record.partition, record.offset)] = record.value

    async def _reject(self, record: Any, reason: str) -> None:
        await self._dead_letters.send(
            poison_of(record), RecordRejected(reason, "decode"), group=SERVICE_NAME
        )

    async def decode_queued(self, entry: SpoolEntry, value: bytes) -> dict[str, Any] | None:
        """The QueuedMessage of `entry`, fully decoded; None if it does not decode: then it is
        dead-lettered and dropped from the index rather than failing the service. The index
        walk refuses such records already (spool_index.py); this keeps a gap there from
        becoming a crash loop again."""
        try:
            _, message = decode(value, "QueuedMessage")
        except DecodeError as error:
            poison = PoisonRecord(
                self._topics.queued.name,
                entry.partition,
                entry.offset,
                entry.id.encode("utf-8"),
                value,
            )
            self.state.forget(entry.id)
            await self._dead_letters.send(
                poison, RecordRejected(error.reason, "decode"), group=SERVICE_NAME
            )
            return None
        return dict(message)

    # --- releasing ---------------------------------------------------------------------

    def _rate_of(self, queue: str) -> MessageRate | None:
        return message_rate_of(self.configs.resolve(queue))

    async def _release_due(self) -> None:
        while True:
            now = self._now_ms()
            due = self.state.take_due(now, RELEASE_BATCH, self._rate_of)
            if not due:
                return
            values = await self.fetch_queued(due)
            sends = []
            for entry in due:
                value = values.get((entry.partition, entry.offset))
                if value is None:
                    # Superseded meanwhile: the newer record re-schedules it. It stays in
                    # flight until then (or until the lease ends).
                    log.warning("released record not found", extra={"id": entry.id})
                    continue
                message = await self.decode_queued(entry, value)
                if message is None:
                    continue
                rule = self.actions.rule_for_release(entry.queue, now)
                if rule is None:
                    sends.append(self._send_request(entry, message, now))
                elif rule.action is AdminAction.BOUNCE:
                    sends.append(self.actions.bounce([entry], rule))
                else:
                    sends.append(self.actions.suspend(entry, value, rule))
            results = await asyncio.gather(*sends, return_exceptions=True)
            failures = [r for r in results if isinstance(r, BaseException)]
            if failures:
                raise failures[0]
            if len(due) < RELEASE_BATCH:
                return

    async def fetch_queued(self, entries: list[SpoolEntry]) -> dict[tuple[int, int], bytes]:
        """The `queued` record values of `entries` by (partition, offset): from the records in
        hand, else fetched back from the spool; a missing (compacted, tombstoned) one is left
        out."""
        values: dict[tuple[int, int], bytes] = {}
        wanted: list[tuple[int, int]] = []
        for entry in entries:
            where = (entry.partition, entry.offset)
            value = self._in_hand.get(where)
            if value is None:
                wanted.append(where)
            else:
                values[where] = value
        if wanted:
            metrics.SPOOL_FETCHES.inc(len(wanted))
            for where, record in (await self._spool.fetch(wanted)).items():
                if record.value is not None:
                    values[where] = record.value
        return values

    async def _send_request(self, entry: SpoolEntry, message: dict[str, Any], now_ms: int) -> None:
        request = {
            "id": entry.id,
            "queue": entry.queue,
            "attempt": entry.attempts,
            "sender": message["sender"],
            "recipient": message["recipient"],
            "content": message["content"],
            "meta": message["meta"],
            "created_at": message["created_at"],
            "queue_config": self.configs.resolve(entry.queue).to_json(),
            "released_at": _datetime(now_ms),
        }
        try:
            await self._producer.send(
                self._topics.attempts.name,
                encode("DeliveryRequest", request),
                key=entry.id,
                partition=entry.partition,
            )
        except Exception:
            self.state.release_failed(entry.id, entry.attempts)
            raise
        metrics.RELEASES.inc()

    # --- outcomes ----------------------------------------------------------------------

    async def _apply_outcomes(self, records: list[Any]) -> None:
        accepted: list[tuple[SpoolEntry, dict[str, Any]]] = []
        for record in records:
            if record.value is None:
                continue
            try:
                _, outcome = decode(record.value, "DeliveryOutcome")
            except DecodeError as error:
                await self._reject(record, error.reason)
                continue
            entry = self.state.accept_outcome(outcome["id"], outcome["attempt"])
            if entry is not None:
                accepted.append((entry, dict(outcome)))
        transient = [(e, o) for e, o in accepted if o["kind"] == "TRANSIENT_FAILURE"]
        messages = await self._spool.fetch((e.partition, e.offset) for e, _ in transient)
        writes = []
        for entry, outcome in accepted:
            if outcome["kind"] == "TRANSIENT_FAILURE":
                record = messages.get((entry.partition, entry.offset))
                if record is None or record.value is None:
                    self.state.outcome_failed(entry.id, entry.attempts)
                    continue
                if await self.decode_queued(entry, record.value) is None:
                    continue
                writes.append(self._retry_or_expire(entry, record.value, outcome))
            else:
                writes.append(self._complete(entry, outcome["kind"]))
        results = await asyncio.gather(*writes, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            # Not committed: the outcomes are read again after the restart.
            raise failures[0]
        self._mark_applied(records)

    def _mark_applied(self, records: list[Any]) -> None:
        """Notes the outcomes' offsets for the loop to commit, at most every
        OUTCOME_COMMIT_INTERVAL_SECONDS: outcomes apply idempotently, so committing less often
        only means that a new owner reads up to that much again; under load this saves an
        OffsetCommit per pass."""
        pending = self._uncommitted
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            pending[tp] = max(pending.get(tp, 0), record.offset + 1)

    async def commit_outcomes(self) -> None:
        """Commits the applied outcomes not committed yet (also on revocation and stop)."""
        if not self._uncommitted:
            return
        offsets, self._uncommitted = self._uncommitted, {}
        self._last_commit = time.monotonic()
        try:
            await self._consumer.commit(offsets)
        except Exception as error:
            # A rebalance: the outcomes are read again by the next owner, idempotently.
            log.warning("outcome commit failed", extra={"error": repr(error)})

    # --- writes (also used by `admin_actions`) ------------------------------------------

    async def write_log(self, message_id: str, record: Any) -> None:
        await self._producer.send(
            self._topics.log.name, encode("LogRecord", record), key=message_id
        )

    async def write_queued(self, message_id: str, value: bytes, partition: int) -> None:
        await self._producer.send(
            self._topics.queued.name, value, key=message_id, partition=partition
        )

    async def write_tombstone(self, entry: SpoolEntry) -> None:
        await self._tombstone(entry)

    async def retry_or_expire(
        self, entry: SpoolEntry, value: bytes, outcome: dict[str, Any]
    ) -> None:
        await self._retry_or_expire(entry, value, outcome)

    async def _tombstone(self, entry: SpoolEntry) -> None:
        await self._producer.send(
            self._topics.queued.name, None, key=entry.id, partition=entry.partition
        )

    async def _complete(self, entry: SpoolEntry, kind: str) -> None:
        try:
            await self._tombstone(entry)
        except Exception:
            self.state.outcome_failed(entry.id, entry.attempts)
            raise
        metrics.COMPLETIONS.labels(kind).inc()

    async def _retry_or_expire(
        self, entry: SpoolEntry, value: bytes, outcome: dict[str, Any]
    ) -> None:
        _, message = decode(value, "QueuedMessage")
        now = self._now_ms()
        plan = decide_after_transient_failure(
            attempts=entry.attempts,
            created_at=message["created_at"],
            now=_datetime(now),
            config=self.configs.resolve(entry.queue),
            random=self._random,
        )
        try:
            if isinstance(plan, Expire):
                await self._expire(entry, dict(message), plan, now)
                metrics.EXPIRATIONS.inc()
                return
            updated = {
                **message,
                "due_at": plan.next_due,
                "attempts": plan.attempts,
                "last_response": outcome["response"],
            }
            await self._producer.send(
                self._topics.queued.name,
                encode("QueuedMessage", updated),
                key=entry.id,
                partition=entry.partition,
            )
            metrics.REQUEUES.inc()
        except Exception:
            self.state.outcome_failed(entry.id, entry.attempts)
            raise

    async def _expire(
        self, entry: SpoolEntry, message: dict[str, Any], plan: Expire, now_ms: int
    ) -> None:
        record = {
            "type": "Expiration",
            "id": entry.id,
            "sender": message["sender"],
            "recipients": [message["recipient"]],
            "queue": entry.queue,
            "site": "",
            "size": len(message["content"]),
            "response": plan.response.to_dict(),
            "peer_address": None,
            "timestamp": _datetime(now_ms),
            "created": message["created_at"],
            "num_attempts": plan.attempts,
            "bounce_classification": "Uncategorized",
            "egress_pool": None,
            "egress_source": None,
            "delivery_protocol": None,
            "reception_protocol": None,
            "meta": message["meta"],
            "headers": {},
            "nodeid": "",
            "session_id": None,
        }
        # The log record first: if the tombstone then fails, the retry logs it again
        # (at-least-once), rather than removing a message without a trace.
        await self._producer.send(self._topics.log.name, encode("LogRecord", record), key=entry.id)
        await self._tombstone(entry)


async def main(runtime: ServiceRuntime) -> None:
    settings = runtime.settings
    scheduler = Scheduler(settings, policy_config=policy_queue_config(settings))

    async def rebuilt() -> bool:
        return scheduler.ready

    runtime.health.add_readiness_check("rebuilt", rebuilt)
    runtime.health.set_ready(True)
    own = settings.scheduling
    api = None
    if own.admin_api_enabled:
        api = await start_admin_api(
            scheduler, own.admin_api_bind, own.admin_api_port, own.admin_api_tokens
        )
    try:
        await scheduler.run(runtime.shutdown_requested)
    finally:
        if api is not None:
            await api.cleanup()


SERVICE = ServiceSpec(
    name=SERVICE_NAME,
    main=main,
    groups={SERVICE_NAME: (TopicRole.QUEUED, TopicRole.OUTCOMES)},
    # The rebuild reads the recent attempts; followers read the operator's control topics.
    reads=(TopicRole.ATTEMPTS, TopicRole.QUEUE_CONFIG, TopicRole.ADMIN),
    produces=(TopicRole.ATTEMPTS, TopicRole.QUEUED, TopicRole.LOG, TopicRole.DEAD_LETTER),
)
