"""Operator rules from the compacted `admin` topic, read in full and followed live.

Every instance needs every rule (a rule may match queues of any partition); `caught_up` holds
releases back until the rules present at start are applied, so a restart never delivers a
message of a suspended or bounced queue. New rules are also queued on `arrived` for the
service's loop, which applies bounces and rebinds to the messages waiting at that moment.
"""

from __future__ import annotations

import asyncio
import logging

from ..core.domain.admin_rules import AdminRule, AdminRuleSet
from ..core.kafka.admin_commands import apply_or_reject
from ..core.kafka.dead_letter import DeadLetters
from ..core.kafka.topic_follower import TopicFollower

log = logging.getLogger(__name__)


class AdminRulesReader:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        rules: AdminRuleSet,
        *,
        client_id: str,
        dead_letters: DeadLetters,
        group: str,
    ) -> None:
        self.rules = rules
        self._follower = TopicFollower(
            bootstrap,
            topic,
            partitions,
            self._apply,
            client_id=client_id,
            what="admin rules",
            dead_letters=dead_letters,
            group=group,
        )
        self.caught_up = self._follower.caught_up
        # Rules read (at start and live), for the loop to apply to waiting messages.
        self.arrived: list[AdminRule] = []
        self.wake = asyncio.Event()

    async def start(self) -> None:
        await self._follower.start()

    async def stop(self) -> None:
        await self._follower.stop()

    def take_arrived(self) -> list[AdminRule]:
        arrived, self.arrived = self.arrived, []
        return arrived

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        rule = apply_or_reject(self.rules, key, value)
        if rule is not None:
            log.info("admin rule read", extra={"id": rule.id, "action": rule.action.value})
            self.arrived.append(rule)
            self.wake.set()
