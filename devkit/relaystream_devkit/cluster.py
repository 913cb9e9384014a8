"""A local KRaft cluster of several brokers on loopback, for fault runs and tests.

Each node is a `LocalKafka` (same jars, configuration rendering, start, stop and status) with
its own state directory `DIR/node-K/`, its own ports and a heap of `CLUSTER_NODE_JVM_HEAP`.
All nodes share one `Quorum`: one cluster id and the controller voters.

Controllers: the first three nodes (one when the cluster has fewer than three) are combined
broker+controller voters, the others brokers only. Separate controller JVMs would cost three
more processes on a 2-core machine for nothing a fault run needs; with three combined voters
any one node may die and the remaining two still form the controller majority. With two nodes
a two-voter quorum would stop when either dies, so node 1 alone votes and only node 2 may be
killed (`killable_nodes`).

Replication follows `TopicSettings.production()` (3 replicas, min.insync.replicas 2), capped by
the cluster size so that one node down never blocks acks=all writes: `replication_for(n)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from relaystream.core.kafka.topics import TopicSettings

from .broker import (
    CLUSTER_NODE_JVM_HEAP,
    LOOPBACK,
    BrokerError,
    LocalKafka,
    Quorum,
    free_loopback_ports,
)

MAJORITY_SAFE_VOTERS = 3


@dataclass(frozen=True)
class Replication:
    replicas: int
    min_insync: int


def replication_for(brokers: int) -> Replication:
    """Production's replication, capped so that losing one of `brokers` keeps writes going."""
    production = TopicSettings.production()
    replicas = min(production.replication_factor, brokers)
    return Replication(replicas, max(1, min(production.min_insync_replicas, replicas - 1)))


def topic_settings_for(brokers: int, base: TopicSettings) -> TopicSettings:
    """`base` (prefix, partitions) with the replication a cluster of `brokers` gives."""
    replication = replication_for(brokers)
    return dataclasses.replace(
        base,
        replication_factor=replication.replicas,
        min_insync_replicas=replication.min_insync,
    )


def voter_count(brokers: int) -> int:
    return MAJORITY_SAFE_VOTERS if brokers >= MAJORITY_SAFE_VOTERS else 1


@dataclass(frozen=True)
class ClusterNode:
    node_id: int
    port: int
    controller_port: int

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def name(self) -> str:
        return f"broker-{self.node_id}"


class LocalKafkaCluster:
    """`brokers` local nodes under `state_dir`; see the module doc."""

    def __init__(self, state_dir: Path, brokers: int = 3) -> None:
        if brokers < 1:
            raise ValueError(f"brokers must be >= 1, got {brokers}")
        self.state_dir = state_dir.resolve()
        ports = free_loopback_ports(2 * brokers)
        self.nodes = [ClusterNode(n + 1, ports[2 * n], ports[2 * n + 1]) for n in range(brokers)]
        replication = replication_for(brokers)
        self.quorum = Quorum(
            voters={n.node_id: n.controller_port for n in self.nodes[: voter_count(brokers)]},
            replicas=replication.replicas,
            min_insync=replication.min_insync,
        )
        self._brokers = {
            n.node_id: LocalKafka(
                state_dir=self.state_dir / f"node-{n.node_id}",
                node_id=n.node_id,
                jvm_heap=CLUSTER_NODE_JVM_HEAP,
            )
            for n in self.nodes
        }

    @property
    def bootstrap(self) -> str:
        """Every node's address: a client reaches the cluster whichever node is down."""
        return ",".join(n.bootstrap for n in self.nodes)

    def node(self, node_id: int) -> ClusterNode:
        return self.nodes[node_id - 1]

    def broker(self, node_id: int) -> LocalKafka:
        return self._brokers[node_id]

    def killable_nodes(self) -> list[int]:
        """Nodes whose loss leaves a controller majority running."""
        if len(self.quorum.voters) >= MAJORITY_SAFE_VOTERS:
            return [n.node_id for n in self.nodes]
        return [n.node_id for n in self.nodes if n.node_id not in self.quorum.voters]

    def start(self, timeout_s: float = 180.0) -> str:
        """Launch every node, then wait for each; returns `bootstrap`."""
        self.stop()
        try:
            for node in self.nodes:
                self.start_node(node.node_id, wait_s=None)
            deadline = time.monotonic() + timeout_s
            for node in self.nodes:
                self._brokers[node.node_id].wait_until_ready(max(1.0, deadline - time.monotonic()))
        except BrokerError:
            self.stop()
            raise
        return self.bootstrap

    def start_node(self, node_id: int, wait_s: float | None = 180.0) -> None:
        """(Re)start one node on its own ports and data; wait for it unless `wait_s` is None."""
        node = self.node(node_id)
        broker = self._brokers[node_id]
        broker.launch(
            port=node.port,
            controller_port=node.controller_port,
            data_dir=broker.default_data_dir,
            quorum=self.quorum,
        )
        if wait_s is not None:
            broker.wait_until_ready(wait_s)

    def kill_node(self, node_id: int) -> None:
        self._brokers[node_id].kill()

    def stop(self) -> None:
        for broker in self._brokers.values():
            if broker.is_running():
                broker.stop()

    def is_running(self, node_id: int) -> bool:
        return self._brokers[node_id].is_running()

    async def in_sync_everywhere(self, node_id: int, topics: Iterable[str] | None = None) -> bool:
        """Whether `node_id` is in the ISR of every partition it replicates, of `topics` or
        (None) of every topic, the internal offsets and transaction state included."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            described = await admin.describe_topics(None if topics is None else list(topics))
        except Exception:  # the cluster is settling; the caller asks again
            return False
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        for topic in described:
            if topic.get("error_code", 0) != 0:
                return False
            for partition in topic["partitions"]:
                if node_id in partition["replicas"] and node_id not in partition["isr"]:
                    return False
        return True

    async def wait_in_sync(
        self, node_id: int, topics: Iterable[str] | None = None, within_s: float = 300.0
    ) -> float:
        """Seconds until `node_id` is in every ISR of `topics` (None: all); BrokerError past
        `within_s`."""
        names = None if topics is None else list(topics)
        started = time.monotonic()
        while not await self.in_sync_everywhere(node_id, names):
            if time.monotonic() - started > within_s:
                raise BrokerError(f"broker-{node_id} not back in sync within {within_s:.0f}s")
            await asyncio.sleep(0.5)
        return time.monotonic() - started

    async def leader_counts(self, topics: Iterable[str]) -> Counter[int]:
        """How many partitions of `topics` each node leads now."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            described = await admin.describe_topics(list(topics))
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        return Counter(
            partition["leader"] for topic in described for partition in topic["partitions"]
        )
