"""Rebalances: build only the newly assigned `queued` partitions, drop only the revoked ones.

aiokafka rebalances eagerly: every partition is revoked, then the new assignment is given. So:

- on revoke, after the loop's current pass (nothing is released while the group decides), the
  applied outcomes are committed and every partition's state is kept;
- on assign, the states of partitions not in the new assignment are dropped, those in it kept,
  and only the new ones are built, in the background: their `queued` and `outcomes` partitions
  stay paused until built, while the loop keeps serving the kept ones.

A partition in two consecutive assignments of this member was owned by nobody else in between:
a rebalance hands out each partition to one member of the new generation, and this member was
in both generations, so no other generation, hence no other owner, came between them. Then
everything that changed the partition is in `queued` after our read position (a member that
was evicted and rejoined sees a generation jump: its states may be stale, e.g. another owner's
releases on `attempts`, so it builds everything again).

aiokafka resets every assigned partition's position to the committed offset on reassignment;
`queued` is never committed (it is the spool), so a kept partition is seeked back to its own
next offset, or it would re-read its whole spool. `outcomes` resume from their committed
offsets: applying an outcome again is a no-op per (message id, attempt).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition

from ..core.kafka.topics import TopicCatalog
from . import metrics
from .rebuild import BuiltPartition

log = logging.getLogger(__name__)

BuildPartition = Callable[[int], Coroutine[Any, Any, BuiltPartition]]


@dataclass(frozen=True)
class AssignmentPlan:
    keep: frozenset[int]
    drop: frozenset[int]
    build: frozenset[int]


def plan_assignment(held: set[int], assigned: set[int], *, consecutive: bool) -> AssignmentPlan:
    """What to do with the partitions `held` (built or being built) given a new assignment;
    `consecutive`: this member's previous assignment was of the generation just before."""
    if not consecutive:
        return AssignmentPlan(frozenset(), frozenset(held), frozenset(assigned))
    return AssignmentPlan(
        frozenset(held & assigned), frozenset(held - assigned), frozenset(assigned - held)
    )


def _generation(consumer: Any) -> int:
    # aiokafka exposes the group generation only on its coordinator (set before the
    # assignment callback runs); -1 when the member is not in the group.
    return int(consumer._coordinator.generation)


class PartitionAssignment(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """The group consumer's listener and the partitions being built; the scheduler installs
    the built ones from its loop (`take_built`)."""

    def __init__(
        self,
        consumer: Any,
        topics: TopicCatalog,
        *,
        served: Callable[[], set[int]],
        seek_kept: Callable[[int], int],
        drop: Callable[[int], object],
        build: BuildPartition,
        commit_outcomes: Callable[[], Awaitable[None]],
        pass_lock: asyncio.Lock,
        wake: asyncio.Event,
    ) -> None:
        self._consumer = consumer
        self._topics = topics
        self._served = served
        self._seek_kept = seek_kept
        self._drop = drop
        self._build = build
        self._commit_outcomes = commit_outcomes
        self._pass_lock = pass_lock
        self._wake = wake
        self._building: dict[int, asyncio.Task[BuiltPartition]] = {}
        self._generation: int | None = None
        self._assigned_at = 0.0
        # False from a revocation until the next assignment: nothing is released meanwhile.
        self.serving = False

    @property
    def ready(self) -> bool:
        """Serving, and every assigned partition built."""
        return self.serving and not self._building

    def _tps(self, partitions: set[int] | frozenset[int]) -> list[TopicPartition]:
        """The assigned `queued` and `outcomes` partitions of these numbers."""
        assigned = self._consumer.assignment()
        return [
            tp
            for topic in (self._topics.queued.name, self._topics.outcomes.name)
            for tp in (TopicPartition(topic, n) for n in partitions)
            if tp in assigned
        ]

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # After the loop's current pass: its releases and outcome writes are acknowledged
        # before the next owner reads `attempts` and `queued` to build the partition.
        async with self._pass_lock:
            self.serving = False
            metrics.READY.set(0)
            await self._commit_outcomes()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self._pass_lock:
            self._assign(assigned)

    def _assign(self, assigned: set[TopicPartition]) -> None:
        generation = _generation(self._consumer)
        consecutive = self._generation is not None and generation == self._generation + 1
        self._generation = generation
        numbers = {tp.partition for tp in assigned if tp.topic == self._topics.queued.name}
        held = self._served() | set(self._building)
        plan = plan_assignment(held, numbers, consecutive=consecutive)
        for number in plan.drop:
            task = self._building.pop(number, None)
            if task is not None:
                task.cancel()
            self._drop(number)
        for number in plan.keep:
            if number in self._building:
                # Still building: the fresh assignment is not paused.
                self._consumer.pause(*self._tps({number}))
            else:
                offset = self._seek_kept(number)
                self._consumer.seek(TopicPartition(self._topics.queued.name, number), offset)
        self._consumer.pause(*self._tps(plan.build))
        for number in plan.build:
            task = asyncio.create_task(self._build(number))
            task.add_done_callback(lambda _: self._wake.set())
            self._building[number] = task
        self._assigned_at = time.monotonic()
        self.serving = True
        log.info(
            "partitions assigned",
            extra={
                "generation": generation,
                "kept": sorted(plan.keep),
                "dropped": sorted(plan.drop),
                "building": sorted(plan.build),
            },
        )
        if self.ready:
            self._note_ready()
        self._wake.set()

    def take_built(self) -> list[BuiltPartition]:
        """The partitions built since the last call (raises a build's error)."""
        built = []
        for number, task in list(self._building.items()):
            if task.done():
                del self._building[number]
                built.append(task.result())
        return built

    def resume(self, partition: int) -> None:
        """`partition` was installed (and its `queued` seeked to its next offset)."""
        self._consumer.resume(*self._tps({partition}))
        if self.ready:
            self._note_ready()

    def _note_ready(self) -> None:
        seconds = time.monotonic() - self._assigned_at
        metrics.READY.set(1)
        metrics.REBUILD_SECONDS.set(seconds)
        log.info(
            "assigned partitions built: releasing",
            extra={"partitions": sorted(self._served()), "seconds": round(seconds, 3)},
        )

    async def stop(self) -> None:
        for task in self._building.values():
            task.cancel()
        await asyncio.gather(*self._building.values(), return_exceptions=True)
        self._building.clear()
