"""Publishes this process's ready queues (its connection pools) on the `ready-queues` topic.

Every `CHECK_SECONDS` each pool's state (connection and ready counts, the states it is in
and since when, its path config) is compared with what was last published for it: a change
is published at once, an unchanged state again every `refresh_seconds` so that readers can
expire the state of a process that stopped (`expires_at`, three refreshes ahead). A pool the
registry forgot gets a tombstone, and so does every pool at shutdown. A rate bounded to one
record per ready queue per check keeps a busy pool, whose counts change all the time, cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime, timedelta

from ..core.domain.admin_rules import AdminAction, AdminRuleSet
from ..core.domain.token_bucket import MessageRate
from ..core.events.codec import encode
from ..core.events.records import ReadyQueueState
from ..core.kafka.producer import EventProducer
from ..core.kafka.ready_queue_states import SUSPENDED
from .pool import ConnectionPool, PoolRegistry

log = logging.getLogger(__name__)

CHECK_SECONDS = 1.0


def path_config_summary(pool: ConnectionPool) -> dict[str, str]:
    """The egress path fields a pool applies, as JSON texts (KumoMTA's path config names)."""
    limits, options = pool.limits, pool.options
    fields: dict[str, object] = {
        "connection_limit": limits.connection_limit,
        "max_deliveries_per_connection": limits.max_deliveries_per_connection,
        "idle_timeout": limits.idle_timeout,
        "max_message_rate": _rate(limits.message_rate),
        "max_connection_rate": _rate(limits.connection_rate),
        "enable_tls": options.tls_mode.value,
        "enable_pipelining": options.pipelining,
        "connect_timeout": options.timeouts.connect,
        "source_address": options.source_address,
    }
    return {name: json.dumps(value) for name, value in fields.items()}


def _rate(rate: MessageRate | None) -> dict[str, object] | None:
    if rate is None:
        return None
    return {"limit": rate.limit, "period_seconds": rate.period_ms / 1000, "max_burst": rate.burst}


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class ReadyQueuePublisher:
    def __init__(
        self,
        producer: EventProducer,
        topic: str,
        pools: PoolRegistry,
        suspensions: AdminRuleSet,
        *,
        node: str,
        refresh_seconds: float,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._pools = pools
        self._suspensions = suspensions
        self._node = node
        self._refresh = timedelta(seconds=refresh_seconds)
        # Ready queue name -> (what was published, less its timestamps; when).
        self._published: dict[str, tuple[tuple[object, ...], datetime]] = {}

    def state_of(self, pool: ConnectionPool, now: datetime) -> ReadyQueueState:
        name = pool.key.ready_queue
        states = {state: _at(since) for state, since in sorted(pool.states.items())}
        rule = self._suspensions.matching(
            AdminAction.SUSPEND_READY_Q, name, int(now.timestamp() * 1000)
        )
        if rule is not None:
            states[SUSPENDED] = datetime.fromtimestamp(rule.created_at / 1000, UTC)
        return {
            "name": name,
            "egress_source": pool.key.egress_source,
            "site": pool.key.site,
            "node": self._node,
            "connection_count": pool.connections,
            "ready_count": pool.ready_count,
            "states": states,
            "path_config": path_config_summary(pool),
            "updated_at": now,
            "expires_at": now + 3 * self._refresh,
        }

    async def publish_changes(self, now: datetime) -> int:
        """Publishes what changed since the last call (and what is due a refresh); the
        number of records written."""
        sends = []
        live: set[str] = set()
        for pool in self._pools.pools():
            state = self.state_of(pool, now)
            name = state["name"]
            live.add(name)
            content = tuple(v for k, v in state.items() if k not in ("updated_at", "expires_at"))
            last = self._published.get(name)
            if last is not None and last[0] == content and now - last[1] < self._refresh:
                continue
            self._published[name] = (content, now)
            sends.append(
                self._producer.send(self._topic, encode("ReadyQueueState", state), key=name)
            )
        for name in set(self._published) - live:
            del self._published[name]
            sends.append(self._producer.send(self._topic, None, key=name))
        await asyncio.gather(*sends)
        return len(sends)

    async def withdraw_all(self) -> None:
        """Tombstones for every ready queue published: this process stops."""
        names, self._published = list(self._published), {}
        await asyncio.gather(*(self._producer.send(self._topic, None, key=n) for n in names))

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.publish_changes(datetime.now(UTC))
            except Exception as error:  # Kafka unavailable: the next check tries again
                log.warning("ready queue states not published", extra={"error": repr(error)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), CHECK_SECONDS)
