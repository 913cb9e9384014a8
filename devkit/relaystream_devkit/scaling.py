"""`relaystream chaos --compare-instances`: the end-to-end rate with 1 and with 2 instances of
each service, and the pause that an instance joining its consumer group causes.

On one fleet (two instances of each service declared, only instance 0 started):
1. rate with 1 instance: a burst of messages offered faster than the pipeline takes them;
   rate = delivered / (last delivery - first send);
2. joins: a steady load well below capacity; scheduling-1 starts, then delivery-1, each
   joining its group and taking over some partitions (routing-1 and ingest-1 start after);
3. rate with 2 instances: the same burst again.

How the join pause is measured. Every message goes to one of `DOMAINS` queues; a queue lives
on one partition of `queued` and `attempts` (`partition_for_queue`), owned by one scheduling
and one delivery instance. The sink's file times give each message's arrival. Per partition,
the pause is the longest gap between consecutive arrivals of that partition's messages from
the join's start until `AFTER_JOIN_S` after the instance answered ready; the same gap over
`STEADY_S` before the join is the baseline (what gaps the steady load has anyway). The group's
assignment, read from the group coordinator after the join, splits the partitions into those
that stayed with instance 0 (kept: they must not pause) and those that moved to the new one
(moved: they pause while the new owner builds its state).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from relaystream.core.domain.queue_name import QueueName
from relaystream.core.kafka.topics import TopicSpec, partition_for_queue

from .broker import free_loopback_ports
from .chaos import ChaosPlan, Load, SinkCounter, prepare_run, recipient_domain
from .dev import SERVICE_NAMES
from .fleet import Fleet
from .sink import MailSink

# Offered rate of the bursts: above what the pipeline takes on a small machine.
BURST_RATE = 1000.0
BURST_SESSIONS = 16
# The steady load around the joins: well below capacity, so a pause is the join's.
STEADY_RATE = 40.0
STEADY_S = 10.0
AFTER_JOIN_S = 10.0
SETTLE_TIMEOUT_S = 300.0
# Services whose join is measured, by the partitions of the topic their group consumes.
MEASURED_JOINS = ("scheduling", "delivery")


@dataclass
class JoinPause:
    """Gaps between arrivals per partition, seconds (see the module doc)."""

    instance: str
    ready_after_s: float
    kept_partitions: list[int]
    moved_partitions: list[int]
    steady_max_gap_s: float
    kept_max_gap_s: float
    moved_max_gap_s: float
    gap_by_partition_s: dict[int, float] = field(default_factory=dict)


@dataclass
class ScalingReport:
    burst_messages: int = 0
    rate_1_instance: float = 0.0
    rate_2_instances: float = 0.0
    joins: list[JoinPause] = field(default_factory=list)


def queue_partition_of(message_id: int, sink_port: int, partitions: int) -> int:
    """The partition of `queued`/`attempts` a chaos message travels on."""
    meta = {"routing_domain": f"[127.0.0.1]:{sink_port}"}
    queue = QueueName.for_message(recipient_domain(message_id), meta)
    return partition_for_queue(queue, partitions)


def max_gap(times: Iterable[float]) -> float:
    ordered = sorted(times)
    return max((b - a for a, b in itertools.pairwise(ordered)), default=0.0)


async def group_assignment(bootstrap: str, group: str, topic: str) -> dict[str, set[int]]:
    """client id -> partitions of `topic` it holds in `group` now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        responses = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    held: dict[str, set[int]] = defaultdict(set)
    for response in responses:
        for described in response.to_object()["groups"]:
            for member in described["members"]:
                assignment = ConsumerProtocolMemberAssignment.decode(member["member_assignment"])
                for owned in assignment.partitions():
                    if owned.topic == topic:
                        held[member["client_id"]].add(owned.partition)
    return dict(held)


class ScalingRun:
    def __init__(
        self,
        fleet: Fleet,
        sink: SinkCounter,
        sink_port: int,
        burst: int,
        say: Callable[[str], None],
    ) -> None:
        self._fleet = fleet
        self._sink = sink
        self._sink_port = sink_port
        self._burst = burst
        self._say = say
        self._next_id = 0
        self.report = ScalingReport(burst_messages=burst)

    async def run(self) -> ScalingReport:
        fleet = self._fleet
        self._say("scaling: 1 instance of each service")
        await fleet.start(names=[f"{service}-0" for service in SERVICE_NAMES])
        self.report.rate_1_instance = await self._burst_rate()
        self._say(f"scaling: {self.report.rate_1_instance}/s end to end with 1 instance")
        steady = self._steady_load()
        for service in MEASURED_JOINS:
            await asyncio.sleep(STEADY_S)
            self.report.joins.append(await self._join(service))
        await steady
        for service in SERVICE_NAMES:
            if f"{service}-1" not in fleet.processes:
                fleet.start_instance(f"{service}-1")
                await fleet.wait_ready(f"{service}-1")
        self.report.rate_2_instances = await self._burst_rate()
        self._say(f"scaling: {self.report.rate_2_instances}/s end to end with 2 instances")
        return self.report

    def _load(self, messages: int, rate: float, sessions: int, name: str) -> Load:
        plan = ChaosPlan(messages=messages, rate=rate, sessions=sessions)
        load = Load(
            plan,
            self._fleet.smtp_addresses(running=True),
            self._fleet.state_dir / f"accepted-{name}.txt",
            first_id=self._next_id,
        )
        self._next_id += messages
        return load

    async def _burst_rate(self) -> float:
        first = self._next_id
        load = self._load(self._burst, BURST_RATE, BURST_SESSIONS, f"burst-{first}")
        started = time.time()
        await load.run()
        ids = {str(n) for n in range(first, first + self._burst)}
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while not ids <= set(self._sink.refresh()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the burst was not delivered within {SETTLE_TIMEOUT_S}s")
            await asyncio.sleep(0.5)
        last = max(self._sink.arrivals[i] for i in ids)
        return round(self._burst / (last - started), 1)

    def _steady_load(self) -> asyncio.Future[None]:
        # Long enough to cover every measured join and its aftermath.
        seconds = (len(MEASURED_JOINS) + 1) * (STEADY_S + AFTER_JOIN_S + 20.0)
        load = self._load(int(seconds * STEADY_RATE), STEADY_RATE, 4, "steady")
        return asyncio.ensure_future(load.run())

    async def _join(self, service: str) -> JoinPause:
        fleet = self._fleet
        name = f"{service}-1"
        topic: TopicSpec = fleet.topics.queued if service == "scheduling" else fleet.topics.attempts
        joined = time.time()
        self._say(f"scaling: {name} joins")
        fleet.start_instance(name)
        ready_s = await fleet.wait_ready(name)
        await asyncio.sleep(AFTER_JOIN_S)
        held = await group_assignment(fleet.bootstrap, fleet.group_of(service), topic.name)
        moved = sorted(held.get(name, set()))
        kept = sorted(held.get(f"{service}-0", set()))
        arrivals = self._arrivals_by_partition(topic.partitions)
        after = joined + ready_s + AFTER_JOIN_S

        def gap(partition: int, start: float, end: float) -> float:
            return max_gap(t for t in arrivals.get(partition, []) if start <= t <= end)

        gaps = {p: round(gap(p, joined, after), 2) for p in range(topic.partitions)}
        steady = max(gap(p, joined - STEADY_S, joined) for p in range(topic.partitions))
        pause = JoinPause(
            instance=name,
            ready_after_s=round(ready_s, 1),
            kept_partitions=kept,
            moved_partitions=moved,
            steady_max_gap_s=round(steady, 2),
            kept_max_gap_s=max((gaps[p] for p in kept), default=0.0),
            moved_max_gap_s=max((gaps[p] for p in moved), default=0.0),
            gap_by_partition_s=gaps,
        )
        self._say(
            f"scaling: {name} ready after {pause.ready_after_s}s; longest gap between "
            f"deliveries: kept partitions {kept} {pause.kept_max_gap_s}s, moved {moved} "
            f"{pause.moved_max_gap_s}s (steady load before: {pause.steady_max_gap_s}s)"
        )
        return pause

    def _arrivals_by_partition(self, partitions: int) -> dict[int, list[float]]:
        self._sink.refresh()
        by_partition: dict[int, list[float]] = defaultdict(list)
        for message_id, arrived in self._sink.arrivals.items():
            partition = queue_partition_of(int(message_id), self._sink_port, partitions)
            by_partition[partition].append(arrived)
        return by_partition


async def run_scaling(
    *,
    bootstrap: str,
    brokers: int,
    state_dir: Path,
    prefix: str,
    burst: int,
    say: Callable[[str], None] = print,
) -> ScalingReport:
    """The measurement of the module doc, on its own fleet, sink and topics (`prefix`)."""
    (sink_port,) = free_loopback_ports(1)
    _, policy = prepare_run(state_dir, sink_port)
    sink = MailSink(port=sink_port, directory=state_dir / "sink", quiet=True)
    fleet = Fleet(bootstrap, prefix, state_dir, policy, instances=2, brokers=brokers)
    sink.start()
    try:
        run = ScalingRun(fleet, SinkCounter(state_dir / "sink"), sink_port, burst, say)
        return await run.run()
    finally:
        fleet.stop()
        sink.stop()


def format_scaling(report: ScalingReport) -> str:
    lines = [
        f"end-to-end rate ({report.burst_messages} messages offered at {BURST_RATE:.0f}/s): "
        f"{report.rate_1_instance}/s with 1 instance of each service, "
        f"{report.rate_2_instances}/s with 2",
    ]
    for join in report.joins:
        lines.append(
            f"  {join.instance} joins: longest gap between deliveries on the partitions it "
            f"left to instance 0 {join.kept_max_gap_s}s, on those it took "
            f"{join.moved_max_gap_s}s (steady load: {join.steady_max_gap_s}s)"
        )
    return "\n".join(lines)
