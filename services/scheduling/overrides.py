"""Queue-config overrides from the compacted `queue-config` topic, read in full and followed
live by every instance (any queue may be assigned to it); see topic_follower.py."""

from __future__ import annotations

import logging

from ..core.events.codec import DecodeError, decode
from ..core.kafka.dead_letter import DeadLetters, RecordRejected
from ..core.kafka.topic_follower import TopicFollower
from .config_resolver import QueueConfigResolver

log = logging.getLogger(__name__)


class QueueConfigOverridesReader:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        resolver: QueueConfigResolver,
        *,
        client_id: str,
        dead_letters: DeadLetters,
        group: str,
    ) -> None:
        self._resolver = resolver
        self._follower = TopicFollower(
            bootstrap,
            topic,
            partitions,
            self._apply,
            client_id=client_id,
            what="overrides",
            dead_letters=dead_letters,
            group=group,
        )
        self.caught_up = self._follower.caught_up

    async def start(self) -> None:
        await self._follower.start()

    async def stop(self) -> None:
        await self._follower.stop()

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        target = key.decode("utf-8", "replace") if key is not None else None
        if value is None:
            if target is not None:
                self._resolver.set_override(target, None)
            return
        try:
            _, override = decode(value, "QueueConfigOverride")
            if target != override["target"]:
                raise RecordRejected(
                    f"record key {target!r} is not its target {override['target']!r}"
                )
            self._resolver.set_override(override["target"], override["config"])
        except (DecodeError, RecordRejected, ValueError) as error:
            # The record replaces the key's override (compaction keeps it, not the old one).
            if target is not None:
                self._resolver.set_override(target, None)
            if isinstance(error, RecordRejected):
                raise
            kind = "decode" if isinstance(error, DecodeError) else "validation"
            raise RecordRejected(str(error), kind) from error
        log.info("queue-config override applied", extra={"target": override["target"]})
