"""`relaystream chaos`: a repeatable fault run that counts every accepted message at the sink.

Several instances of every service run on a local cluster of brokers (a `Fleet` on a
`LocalKafkaCluster`; or on one broker given by address). A bounded SMTP load goes to
the ingest instances, each message carrying its id in an `X-Chaos-Id` header; every id
answered 250 is appended to `accepted.txt` at once. Under load one instance at a time is
SIGKILLed and restarted (the kill plan; a `broker` entry kills -9 the broker that leads
the most partitions among those whose loss keeps a controller majority), then the run waits
until every accepted id reached the sink, which writes each delivered message as a file
under `sink/`. The report counts from those two files: lost (accepted, never delivered) must
be 0; duplicates should stay within the messages that were in flight at the kills.

The clients: a session whose ingest instance died (or answered 4xx) sends its message again
to the next instance. A message whose connection broke after DATA may have been accepted
without the client hearing 250: it is sent again, and may arrive twice (counted as such).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiosmtplib

from relaystream.core.kafka.consumer import SESSION_TIMEOUT_MS

from .broker import free_loopback_ports
from .cluster import LocalKafkaCluster
from .dev import SERVICE_NAMES
from .fleet import Fleet, render_sink_policy
from .sink import MailSink

SENDER = "chaos@sender.chaos.test"
CHAOS_HEADER = "X-Chaos-Id"
_CHAOS_ID = re.compile(rb"^X-Chaos-Id: *(\S+)\r?$", re.MULTILINE | re.IGNORECASE)
# Down this long, a killed consumer-group member is expelled before it comes back.
PAST_SESSION_TIMEOUT_S = SESSION_TIMEOUT_MS / 1000 + 4.0
# Destination domains: each is a queue of its own, spread over the partitions.
DOMAINS = 24
BROKER = "broker"


def default_kills(brokers: int) -> tuple[str, ...]:
    """Each service once; with a cluster, one broker in the middle of them."""
    if brokers < 2:
        return SERVICE_NAMES
    half = len(SERVICE_NAMES) // 2
    return (*SERVICE_NAMES[:half], BROKER, *SERVICE_NAMES[half:])


@dataclass(frozen=True)
class ChaosPlan:
    instances: int = 2
    messages: int = 20_000
    rate: float = 200.0  # messages offered per second
    sessions: int = 8
    # Services whose instances are SIGKILLed in turn (instance 0, then 1, ...), spread evenly
    # over the load.
    kills: tuple[str, ...] = SERVICE_NAMES
    # How long a killed instance stays down, taken in turn: a quick restart rejoins its group
    # under its static id (no rebalance); one past the consumers' session timeout makes the
    # group rebalance when the session expires and again when it comes back.
    restart_after_s: tuple[float, ...] = (2.0, PAST_SESSION_TIMEOUT_S)
    # How long a killed broker stays down before its restart.
    broker_down_s: float = 5.0
    settle_timeout_s: float = 300.0
    partitions: int = 6


@dataclass
class Kill:
    """One kill -9; times in seconds, `at_s` from the start of the load, the others from the
    kill. A service is ready again when /readyz answers 200; a broker when it answers metadata
    listing itself, and in sync again when it is back in the ISR of every partition it
    replicates (all topics, the internal offsets and transaction state included)."""

    target: str
    at_s: float
    in_flight: int
    ready_again_s: float | None = None
    in_sync_again_s: float | None = None
    # Whether the controller had taken the dead broker out of some ISR by its restart (else
    # `in_sync_again_s` says little: it never left).
    left_isr: bool | None = None


@dataclass
class ChaosReport:
    accepted: int = 0
    delivered_unique: int = 0
    deliveries: int = 0
    lost: int = 0
    duplicates: int = 0
    in_flight_at_kills: int = 0
    lost_ids: list[str] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    load_seconds: float = 0.0
    accepted_per_second: float = 0.0
    settle_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicates <= self.in_flight_at_kills

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "ok": self.ok}, indent=2)


class SinkCounter:
    """Delivered ids, read from the sink's files (each file read once), and when each id first
    arrived (the file's modification time, wall clock)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._seen: set[str] = set()
        self.delivered: Counter[str] = Counter()
        self.arrivals: dict[str, float] = {}

    def refresh(self) -> Counter[str]:
        for path in sorted(self.directory.glob("*.eml")):
            if path.name in self._seen:
                continue
            self._seen.add(path.name)
            found = _CHAOS_ID.search(path.read_bytes())
            if found is not None:
                message_id = found.group(1).decode()
                self.delivered[message_id] += 1
                self.arrivals.setdefault(message_id, path.stat().st_mtime)
        return self.delivered


def recipient_domain(message_id: int) -> str:
    """Messages spread over `DOMAINS` destination domains, each a queue of its own."""
    return f"d{message_id % DOMAINS}.chaos.test"


def chaos_message(message_id: str, recipient: str) -> bytes:
    return (
        f"From: <{SENDER}>\r\nTo: <{recipient}>\r\nSubject: chaos {message_id}\r\n"
        f"{CHAOS_HEADER}: {message_id}\r\nMessage-ID: <{message_id}@chaos.test>\r\n\r\n"
        "Sent by relaystream chaos.\r\n"
    ).encode()


class Load:
    """`plan.messages` messages at `plan.rate`, over `plan.sessions` SMTP sessions."""

    def __init__(
        self,
        plan: ChaosPlan,
        addresses: Sequence[tuple[str, int]],
        accepted_path: Path,
        first_id: int = 0,
    ) -> None:
        self._plan = plan
        self._addresses = list(addresses)
        self._accepted = accepted_path.open("a", encoding="utf-8")
        self._ids = iter(range(first_id, first_id + plan.messages))
        self._retry: list[int] = []
        self._next_send = time.monotonic()
        self.accepted = 0

    async def run(self) -> None:
        try:
            await asyncio.gather(*(self._session(n) for n in range(self._plan.sessions)))
        finally:
            self._accepted.close()

    def _take(self) -> int | None:
        if self._retry:
            return self._retry.pop()
        return next(self._ids, None)

    async def _pace(self) -> None:
        """One global schedule for every session: a slot each 1/rate seconds."""
        now = time.monotonic()
        slot = max(self._next_send, now)
        self._next_send = slot + 1.0 / self._plan.rate
        await asyncio.sleep(slot - now)

    async def _session(self, number: int) -> None:
        first = number % len(self._addresses)
        targets = itertools.cycle(self._addresses[first:] + self._addresses[:first])
        client: aiosmtplib.SMTP | None = None
        while (index := self._take()) is not None:
            await self._pace()
            recipient = f"c{index}@{recipient_domain(index)}"
            try:
                if client is None:
                    host, port = next(targets)
                    client = aiosmtplib.SMTP(hostname=host, port=port, timeout=30)
                    await client.connect()
                await client.sendmail(SENDER, [recipient], chaos_message(str(index), recipient))
            except (aiosmtplib.SMTPException, OSError):
                # Refused, 4xx, or the instance died: not accepted as far as we know. Again,
                # on a new connection (to the next instance).
                self._retry.append(index)
                if client is not None:
                    client.close()
                client = None
                await asyncio.sleep(0.2)
                continue
            self.accepted += 1
            self._accepted.write(f"{index}\n")
            self._accepted.flush()
        if client is not None:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()


def read_accepted(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}


async def run_chaos(
    plan: ChaosPlan,
    *,
    bootstrap: str,
    state_dir: Path,
    prefix: str,
    cluster: LocalKafkaCluster | None = None,
    preexec_fn: Callable[[], Any] | None = None,
    say: Callable[[str], None] = print,
) -> ChaosReport:
    """One fault run on the brokers at `bootstrap` (the `cluster`'s, which broker kills
    need); see the module doc."""
    if BROKER in plan.kills and cluster is None:
        raise ValueError("a broker kill needs the cluster to kill")
    (sink_port,) = free_loopback_ports(1)
    accepted_path, policy = prepare_run(state_dir, sink_port)
    sink = MailSink(port=sink_port, directory=state_dir / "sink", quiet=True)
    fleet = Fleet(
        bootstrap,
        prefix,
        state_dir,
        policy,
        instances=plan.instances,
        partitions=plan.partitions,
        brokers=len(cluster.nodes) if cluster is not None else 1,
        preexec_fn=preexec_fn,
    )
    sink.start()
    try:
        say(f"chaos: starting {plan.instances} instances of each service ...")
        await fleet.start()
        sink_counter = SinkCounter(state_dir / "sink")
        return await _under_load(plan, fleet, cluster, accepted_path, sink_counter, say)
    finally:
        fleet.stop()
        sink.stop()


def prepare_run(state_dir: Path, sink_port: int) -> tuple[Path, Path]:
    """An empty accepted.txt and the policy that sends everything to the sink."""
    state_dir.mkdir(parents=True, exist_ok=True)
    accepted_path = state_dir / "accepted.txt"
    accepted_path.write_text("")
    policy = state_dir / "chaos-policy.lua"
    policy.write_text(render_sink_policy(sink_port, written_by="relaystream chaos"))
    return accepted_path, policy


async def _under_load(
    plan: ChaosPlan,
    fleet: Fleet,
    cluster: LocalKafkaCluster | None,
    accepted_path: Path,
    sink: SinkCounter,
    say: Callable[[str], None],
) -> ChaosReport:
    report = ChaosReport()
    load = Load(plan, fleet.smtp_addresses(), accepted_path)
    started = time.monotonic()
    say(f"chaos: {plan.messages} messages at {plan.rate:.0f}/s, kills: {', '.join(plan.kills)}")
    loading = asyncio.ensure_future(load.run())
    expected_s = plan.messages / plan.rate
    kills_of: Counter[str] = Counter()
    restarts: list[asyncio.Future[None]] = []
    for number, service in enumerate(plan.kills):
        # Kill k at (k + 1) / (kills + 1) of the load's expected length.
        due = started + expected_s * (number + 1) / (len(plan.kills) + 1)
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        in_flight = max(0, load.accepted - len(sink.refresh()))
        at_s = round(time.monotonic() - started, 1)
        if service == BROKER:
            assert cluster is not None  # run_chaos checked
            node_id = await _busiest_killable_broker(cluster, fleet)
            await asyncio.to_thread(cluster.kill_node, node_id)
            kill = Kill(f"broker-{node_id}", at_s, in_flight)
            down_s = plan.broker_down_s
            restart = _restart_broker(cluster, node_id, kill, down_s, say)
        else:
            # The first kill of a service takes instance 0, its next one instance 1, ...
            target = f"{service}-{kills_of[service] % plan.instances}"
            kills_of[service] += 1
            if fleet.processes[target].poll() is not None:
                continue  # still down from an earlier kill
            fleet.kill(target)
            kill = Kill(target, at_s, in_flight)
            down_s = plan.restart_after_s[number % len(plan.restart_after_s)]
            restart = _restart(fleet, kill, down_s, say)
        report.kills.append(kill)
        say(f"chaos: killed {kill.target} at {at_s}s ({in_flight} in flight), down {down_s}s")
        restarts.append(asyncio.ensure_future(restart))
    await asyncio.gather(*restarts)
    await loading
    report.load_seconds = round(time.monotonic() - started, 1)
    accepted = read_accepted(accepted_path)
    say(f"chaos: load done: {len(accepted)} accepted; waiting for the sink ...")
    settle_started = time.monotonic()
    while not accepted <= set(sink.refresh()):
        if time.monotonic() - settle_started > plan.settle_timeout_s:
            break
        await asyncio.sleep(1.0)
    # A last look: duplicates may still arrive just after the last accepted id.
    await asyncio.sleep(2.0)
    delivered = sink.refresh()
    report.settle_seconds = round(time.monotonic() - settle_started, 1)
    lost = sorted(accepted - set(delivered), key=int)
    report.accepted = len(accepted)
    report.accepted_per_second = round(len(accepted) / report.load_seconds, 1)
    report.delivered_unique = len(set(delivered) & accepted)
    report.deliveries = sum(delivered.values())
    report.lost = len(lost)
    report.lost_ids = lost[:50]
    report.duplicates = sum(n - 1 for n in delivered.values())
    report.in_flight_at_kills = sum(kill.in_flight for kill in report.kills)
    return report


async def _restart(fleet: Fleet, kill: Kill, down_s: float, say: Callable[[str], None]) -> None:
    await asyncio.sleep(down_s)
    fleet.start_instance(kill.target)
    kill.ready_again_s = round(down_s + await fleet.wait_ready(kill.target), 1)
    say(f"chaos: {kill.target} ready again {kill.ready_again_s}s after the kill")


async def _busiest_killable_broker(cluster: LocalKafkaCluster, fleet: Fleet) -> int:
    """The node leading most partitions of the fleet's topics (its loss moves most leaders)."""
    leaders = await cluster.leader_counts(spec.name for spec in fleet.topics)
    return max(cluster.killable_nodes(), key=lambda node_id: (leaders[node_id], -node_id))


async def _restart_broker(
    cluster: LocalKafkaCluster,
    node_id: int,
    kill: Kill,
    down_s: float,
    say: Callable[[str], None],
) -> None:
    await asyncio.sleep(down_s)
    kill.left_isr = not await cluster.in_sync_everywhere(node_id)
    restarted = time.monotonic()
    await asyncio.to_thread(cluster.start_node, node_id)
    kill.ready_again_s = round(down_s + time.monotonic() - restarted, 1)
    say(f"chaos: {kill.target} answers again {kill.ready_again_s}s after the kill")
    kill.in_sync_again_s = round(
        down_s + time.monotonic() - restarted + await cluster.wait_in_sync(node_id), 1
    )
    say(f"chaos: {kill.target} back in every ISR {kill.in_sync_again_s}s after the kill")


def format_report(report: ChaosReport) -> str:
    lines = [
        f"accepted {report.accepted} ({report.accepted_per_second}/s over {report.load_seconds}s)"
        f", delivered {report.delivered_unique} unique in {report.deliveries} deliveries",
        f"lost {report.lost}, duplicates {report.duplicates} "
        f"(in flight at the kills: {report.in_flight_at_kills})",
    ]
    for kill in report.kills:
        line = (
            f"  kill -9 {kill.target} at {kill.at_s}s: {kill.in_flight} in flight, "
            f"ready again after {kill.ready_again_s}s"
        )
        if kill.in_sync_again_s is not None:
            line += f", back in every ISR after {kill.in_sync_again_s}s"
        if kill.left_isr is not None:
            line += " (it had left the ISR)" if kill.left_isr else " (it never left the ISR)"
        lines.append(line)
    lines.append("OK: nothing lost" if report.ok else "FAILED")
    return "\n".join(lines)
