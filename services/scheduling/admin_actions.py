"""Operator rules applied to the scheduler's messages (ROUTING.md section 11, KumoMTA's admin).

Every instance reads every rule (`admin_reader`) and applies it to the messages of its own
partitions, inside the service's one loop:

- SUSPEND: a due message of a matching queue is not released; it logs a TransientFailure
  `451 4.4.4 KumoMTA internal: scheduled queue is suspended: <reason>` and is requeued with an
  attempt counted and the normal backoff (or expires), as KumoMTA does when a suspended
  scheduled queue would promote a message to its ready queue.
- BOUNCE: waiting messages of a matching queue when the rule arrives, messages that arrive or
  fall due while it lasts: an AdminBounce log record `551 5.7.1`, then a tombstone.
- REBIND: one-shot: waiting messages of a matching queue received before the rule was created
  get the rule's meta; the queue name is recomputed; a message whose queue changes is written
  under its new queue (its partition), due now, logs AdminRebind (250), and only then is its
  old record tombstoned, so a crash in between leaves two copies (resolved on rebuild), never
  none. A message whose meta already has the values is skipped, so re-reading the rule after a
  restart or rebalance finishes an interrupted rebind and does nothing more.

Messages in flight (released, awaiting an outcome) are left alone: a bounce or suspend applies
when they fall due again, as KumoMTA checks at ready-queue insertion.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from ..core.domain.admin_rules import (
    AdminAction,
    AdminRule,
    AdminRuleCounts,
    AdminRuleSet,
    bounced_response,
    rebound_meta,
    rebound_response,
    rule_applies_to_rebind,
    suspended_response,
)
from ..core.domain.log_record import RecordType
from ..core.domain.queue_name import QueueName, QueueNameError
from ..core.events.codec import decode, encode
from ..core.events.meta import MetaError, decode_meta
from ..core.kafka.topics import partition_for_queue
from ..core.spool.entry import SpoolEntry
from . import metrics
from .log_records import message_log_record
from .ports import MessageIndex, OperatorPort

log = logging.getLogger(__name__)

# Rules that act on no waiting message: a suspension holds releases back, a ready queue
# suspension is delivery's.
_NOT_ON_MESSAGES = frozenset({AdminAction.SUSPEND, AdminAction.SUSPEND_READY_Q})


class OperatorActions:
    """The scheduler's side of the admin rules; owned by (and runs in the loop of) the
    scheduler, which it reaches only through `OperatorPort`."""

    def __init__(self, scheduler: OperatorPort) -> None:
        self._scheduler = scheduler
        # Arrived messages of a queue with an active bounce: bounced after the current batch.
        self._to_bounce: set[str] = set()
        # What each bounce and rebind did here, for the admin API's lists.
        self.counts = AdminRuleCounts()

    @property
    def _rules(self) -> AdminRuleSet:
        return self._scheduler.rules

    # --- hooks called by the scheduler -----------------------------------------------------

    def rule_for_release(self, queue: str, now_ms: int) -> AdminRule | None:
        """The bounce (first) or suspension that holds a due message of `queue`, if any."""
        return self._rules.matching(AdminAction.BOUNCE, queue, now_ms) or self._rules.matching(
            AdminAction.SUSPEND, queue, now_ms
        )

    def note_arrival(self, entry: SpoolEntry, now_ms: int) -> None:
        if self._rules.matching(AdminAction.BOUNCE, entry.queue, now_ms) is not None:
            self._to_bounce.add(entry.id)

    async def apply_arrivals(self) -> None:
        """Bounces arrived messages of bounced queues (noted while reading a batch)."""
        if not self._to_bounce:
            return
        ids, self._to_bounce = self._to_bounce, set()
        now = self._scheduler.now_ms()
        claimed = self._scheduler.messages.claim_waiting(ids, now)
        by_rule: dict[str, tuple[AdminRule, list[SpoolEntry]]] = {}
        for entry in claimed:
            rule = self._rules.matching(AdminAction.BOUNCE, entry.queue, now)
            if rule is None:
                self._scheduler.messages.release_failed(entry)
                continue
            by_rule.setdefault(rule.id, (rule, []))[1].append(entry)
        for rule, entries in by_rule.values():
            await self.bounce(entries, rule)

    async def apply_rules(
        self, rules: Iterable[AdminRule], within: MessageIndex | None = None
    ) -> None:
        """Applies new active bounce and rebind rules to the waiting messages (or, after a
        partition was built, all active ones to its messages: `within`)."""
        messages = self._scheduler.messages if within is None else within
        for rule in rules:
            now = self._scheduler.now_ms()
            if not rule.is_active(now) or rule.action in _NOT_ON_MESSAGES:
                continue
            queues = {q for q in messages.queue_names() if rule.matches(q)}
            if not queues:
                continue
            ids = [
                e.id
                for e in messages.entries()
                if e.queue in queues
                and (
                    rule.action is AdminAction.BOUNCE or rule_applies_to_rebind(rule, e.created_at)
                )
            ]
            claimed = messages.claim_waiting(ids, now)
            log.info(
                "applying admin rule",
                extra={"id": rule.id, "action": rule.action.value, "messages": len(claimed)},
            )
            if rule.action is AdminAction.BOUNCE:
                await self.bounce(claimed, rule)
            else:
                await self.rebind(claimed, rule)

    # --- the actions -----------------------------------------------------------------------

    async def _records(self, entries: list[SpoolEntry]) -> dict[str, dict[str, Any]]:
        """The decoded QueuedMessage of each claimed entry; entries whose record is gone wait
        again (a newer record re-schedules them)."""
        values = await self._scheduler.fetch_queued(entries)
        messages: dict[str, dict[str, Any]] = {}
        for entry in entries:
            value = values.get((entry.partition, entry.offset))
            if value is None:
                self._scheduler.messages.release_failed(entry)
                continue
            message = await self._scheduler.decode_queued(entry, value)
            if message is not None:
                messages[entry.id] = message
        return messages

    async def _each(self, entries: list[SpoolEntry], action: Any) -> None:
        """Runs `action(entry, message)` for every claimed entry; a failed one waits again."""
        messages = await self._records(entries)

        async def one(entry: SpoolEntry) -> None:
            try:
                await action(entry, messages[entry.id])
            except Exception:
                self._scheduler.messages.release_failed(entry)
                raise

        results = await asyncio.gather(
            *(one(e) for e in entries if e.id in messages), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise failures[0]

    async def bounce(self, entries: list[SpoolEntry], rule: AdminRule) -> None:
        """AdminBounce log record, then the tombstone (the log first: at-least-once)."""
        response = bounced_response(rule.reason)

        async def bounce_one(entry: SpoolEntry, message: dict[str, Any]) -> None:
            record = message_log_record(
                RecordType.ADMIN_BOUNCE,
                message,
                queue=entry.queue,
                response=response,
                now_ms=self._scheduler.now_ms(),
                num_attempts=entry.attempts,
            )
            await self._scheduler.write_log(entry.id, record)
            await self._scheduler.write_tombstone(entry)
            self._scheduler.messages.forget(entry)
            self.counts.add(rule.id, entry.queue)
            metrics.ADMIN_ACTIONS.labels("bounce").inc()

        await self._each(entries, bounce_one)

    async def suspend(self, entry: SpoolEntry, value: bytes, rule: AdminRule) -> None:
        """A due message of a suspended queue: TransientFailure log, then requeue with backoff
        (or expiry), exactly as a transient delivery failure."""
        _, message = decode(value, "QueuedMessage")
        response = suspended_response(rule.reason)
        record = message_log_record(
            RecordType.TRANSIENT_FAILURE,
            message,
            queue=entry.queue,
            response=response,
            now_ms=self._scheduler.now_ms(),
            num_attempts=entry.attempts + 1,
            site=entry.queue,
        )
        try:
            await self._scheduler.write_log(entry.id, record)
            await self._scheduler.retry_or_expire(entry, value, {"response": response.to_dict()})
        except Exception:
            self._scheduler.messages.release_failed(entry)
            raise
        metrics.ADMIN_ACTIONS.labels("suspend").inc()

    async def rebind(self, entries: list[SpoolEntry], rule: AdminRule) -> None:
        async def rebind_one(entry: SpoolEntry, message: dict[str, Any]) -> None:
            messages = self._scheduler.messages
            meta = rebound_meta(message["meta"], rule)
            if meta is None:
                messages.release_failed(entry)  # already rebound: unchanged
                return
            try:
                domain = str(message["recipient"]).rpartition("@")[2]
                queue = QueueName.for_message(domain, decode_meta(meta))
            except (QueueNameError, MetaError) as error:
                log.warning("rebind skipped", extra={"id": entry.id, "error": str(error)})
                messages.release_failed(entry)
                return
            now = self._scheduler.now_ms()
            moved = queue != entry.queue
            updated = {**message, "queue": queue, "meta": meta}
            if moved:
                # KumoMTA makes a message whose queue changed due now, without jitter.
                updated["due_at"] = datetime.fromtimestamp(now / 1000, UTC)
            partition = partition_for_queue(queue, self._scheduler.queued_partitions)
            # The new record first: a crash before the tombstone leaves two copies, which a
            # rebuild resolves (the newer wins), never a lost message.
            await self._scheduler.write_queued(
                entry.id, encode("QueuedMessage", updated), partition
            )
            if not moved:
                # Same queue (and partition): the new record replaces the old one in place.
                messages.release_failed(entry)
                return
            record = message_log_record(
                RecordType.ADMIN_REBIND,
                updated,
                queue=queue,
                response=rebound_response(entry.queue, queue, rule.reason),
                now_ms=now,
                num_attempts=entry.attempts,
            )
            await self._scheduler.write_log(entry.id, record)
            messages.forget(entry)
            await self._scheduler.write_tombstone(entry)
            self.counts.add(rule.id, entry.queue)
            metrics.ADMIN_ACTIONS.labels("rebind").inc()

        await self._each(entries, rebind_one)
