"""What the operator side of scheduling may use of the `Scheduler`, as Protocols it implements.

`OperatorActions` (admin_actions.py) and the admin HTTP API (admin_api.py) depend on these, not
on the scheduler's class: the scheduler owns them and passes itself, so neither imports
scheduler.py and no import circle remains. Keep them narrow: what an operator action needs to
read (clock, the held messages across the owned partitions, rules) and the writes it makes,
never the loop's Kafka clients nor one partition's internals.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from ..core.domain.admin_rules import AdminRuleCounts, AdminRuleSet
from ..core.domain.log_record import LogRecord
from ..core.kafka.producer import EventProducer
from ..core.kafka.ready_queue_states import ReadyQueueStates
from ..core.kafka.topics import TopicCatalog
from ..core.spool.entry import SpoolEntry
from ..core.spool.reader import SpoolReader
from .config_resolver import QueueConfigResolver
from .state import InFlight, QueueCounts


class MessageIndex(Protocol):
    """The messages held by the owned partitions, across them (`owned.OwnedPartitions`)."""

    def entry(self, message_id: str) -> SpoolEntry | None: ...

    def in_flight(self, message_id: str) -> InFlight | None: ...

    def entries(self) -> list[SpoolEntry]: ...

    def entries_of(self, queue: str) -> list[SpoolEntry]: ...

    def queue_names(self) -> list[str]: ...

    def queue_counts(self) -> dict[str, QueueCounts]: ...

    def claim_waiting(self, message_ids: Iterable[str], now_ms: int) -> list[SpoolEntry]:
        """The waiting ones of `message_ids`, now in flight (an action is under way)."""
        ...

    def release_failed(self, entry: SpoolEntry) -> None:
        """The claimed `entry` waits again."""
        ...

    def forget(self, entry: SpoolEntry) -> None:
        """`entry` left its partition (bounced, moved): never released from it again."""
        ...

    @property
    def message_count(self) -> int: ...


class OperatorPort(Protocol):
    """What operator actions read of the scheduler and the writes they make through it."""

    @property
    def messages(self) -> MessageIndex: ...

    @property
    def rules(self) -> AdminRuleSet: ...

    @property
    def queued_partitions(self) -> int: ...

    def now_ms(self) -> int: ...

    async def fetch_queued(self, entries: list[SpoolEntry]) -> dict[tuple[int, int], bytes]: ...

    async def decode_queued(self, entry: SpoolEntry, value: bytes) -> dict[str, Any] | None: ...

    async def write_log(self, message_id: str, record: LogRecord) -> None: ...

    async def write_queued(self, message_id: str, value: bytes, partition: int) -> None: ...

    async def write_tombstone(self, entry: SpoolEntry) -> None: ...

    async def retry_or_expire(
        self, entry: SpoolEntry, value: bytes, outcome: dict[str, Any]
    ) -> None: ...


class AdminApiPort(Protocol):
    """What the admin HTTP API reads of the scheduler, and where it publishes rules."""

    @property
    def messages(self) -> MessageIndex: ...

    @property
    def rules(self) -> AdminRuleSet: ...

    @property
    def configs(self) -> QueueConfigResolver: ...

    @property
    def topics(self) -> TopicCatalog: ...

    @property
    def producer(self) -> EventProducer: ...

    @property
    def spool(self) -> SpoolReader: ...

    @property
    def ready_queues(self) -> ReadyQueueStates:
        """Delivery's ready queues, as the `ready-queues` topic holds them."""
        ...

    @property
    def rule_counts(self) -> AdminRuleCounts:
        """What each bounce and rebind did on this instance, per queue."""
        ...

    @property
    def ready(self) -> bool:
        """Every assigned partition is built: the instance schedules."""
        ...

    def now_ms(self) -> int: ...
