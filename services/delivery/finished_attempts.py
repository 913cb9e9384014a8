"""Attempts whose outcome is already on `outcomes`: never sent twice after a crash or rebalance.

Delivery commits `attempts` offsets about once a second, and only below the oldest request
still in flight, so after a crash (or a rebalance) the next owner of a partition is handed
requests again that were delivered and whose DeliveryOutcome was written: resending them is
a duplicate a recipient sees. Before it delivers the first request of a partition in an
assignment, the service reads the co-partitioned `outcomes` partition from a little before
that request was released to its end, and skips every request whose (message id, attempt)
is there. What is left to resend is what was in the middle of its SMTP transaction when the
previous owner died: RFC 5321's at-least-once, bounded by the transactions open at that moment.

Why from that request's timestamp: it is the first one not committed, and an outcome is
written after its request (a consumer reads a request only once it was written), so an outcome
of any request handed out again is stamped later; `CLOCK_SKEW_MS` covers producers' clocks.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from ..core.events.codec import DecodeError, decode
from ..core.kafka.partition_reader import read_since
from . import metrics

log = logging.getLogger(__name__)

# The outcomes' and the requests' producers run on different machines.
CLOCK_SKEW_MS = 60_000
# Attempts this process finished, remembered (about 100 bytes each).
RECENT_FINISHED = 100_000

AttemptKey = tuple[str, int]


class FinishedAttempts:
    """Per `outcomes` partition, the attempts finished before this assignment began."""

    def __init__(self, bootstrap: str, outcomes_topic: str, *, client_id: str) -> None:
        self._bootstrap = bootstrap
        self._topic = outcomes_topic
        self._client_id = client_id
        self._scans: dict[int, asyncio.Task[frozenset[AttemptKey]]] = {}
        # What this process finished itself: a request handed to its site's owner twice (the
        # forwarding process crashed before committing) is not sent twice.
        self._recent: OrderedDict[AttemptKey, None] = OrderedDict()

    def note_finished(self, message_id: str, attempt: int) -> None:
        self._recent[(message_id, attempt)] = None
        if len(self._recent) > RECENT_FINISHED:
            self._recent.popitem(last=False)

    def new_assignment(self, partitions: Iterable[int]) -> None:
        """Forget every scan: other instances may have delivered meanwhile. (Handlers still
        waiting on an old scan get its result: their records are handed out again anyway.)"""
        self._scans = {}
        log.debug("finished attempts reset", extra={"partitions": sorted(partitions)})

    async def contains(
        self, partition: int, request_ms: int, message_id: str, attempt: int
    ) -> bool:
        """Whether `outcomes` partition `partition` held this attempt's outcome when the
        partition's first request of this assignment (stamped `request_ms`) arrived."""
        if (message_id, attempt) in self._recent:
            return True
        scan = self._scans.get(partition)
        if scan is None:
            scan = asyncio.ensure_future(self._scan(partition, request_ms - CLOCK_SKEW_MS))
            self._scans[partition] = scan
        # Every request of the partition asks: once the scan is done, no awaiting at all.
        finished = scan.result() if scan.done() else await asyncio.shield(scan)
        return (message_id, attempt) in finished

    async def _scan(self, partition: int, since_ms: int) -> frozenset[AttemptKey]:
        found: set[AttemptKey] = set()

        def note(record: Any) -> None:
            if record.value is None:
                return
            try:
                _, outcome = decode(record.value, "DeliveryOutcome")
            except DecodeError:
                return  # scheduling dead-letters it; it finishes no attempt
            found.add((outcome["id"], outcome["attempt"]))

        read = await read_since(
            self._bootstrap,
            self._topic,
            [partition],
            since_ms=since_ms,
            on_record=note,
            client_id=f"{self._client_id}-finished-attempts",
        )
        metrics.FINISHED_ATTEMPT_SCANS.inc()
        log.info(
            "outcomes read back before delivering",
            extra={"partition": partition, "outcomes": read, "attempts_finished": len(found)},
        )
        return frozenset(found)
