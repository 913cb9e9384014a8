"""What `relaystream bench` measures besides rates: process CPU and memory, log latencies.

CPU time and peak memory come from /proc (Linux): utime+stime of `/proc/<pid>/stat` (children
reaped by the process included, so Postfix's master accounts for its exited workers) and the
RSS high-water mark `VmHWM` of `/proc/<pid>/status`, which the bench resets per run where the
kernel allows it (`clear_refs` 5). Latencies pair each message id's Reception log record with
its Delivery record, using the Avro records' millisecond timestamps; `stage_medians` splits
them at the routing decision (`decided_at`) and the first release (`released_at`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from relaystream.core.events.codec import DecodeError, decode
from relaystream.core.kafka.replay import replay_topic

PROC = Path("/proc")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def committed_arrivals(bootstrap: str, topic: str, count: int, done: Any) -> None:
    """For a child process of a stage benchmark: read `topic` (read_committed) until `count`
    records arrived, then put (first arrival, last arrival) as epoch seconds on the queue
    `done`. A process of its own, so that it shares no event loop or core with what it times."""

    async def read() -> None:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        await consumer.start()
        seen = 0
        first = None
        try:
            while seen < count:
                batch = await consumer.getmany(timeout_ms=100, max_records=10_000)
                seen += sum(len(records) for records in batch.values())
                if seen and first is None:
                    first = time.time()
        finally:
            await consumer.stop()
        done.put((first, time.time()))

    asyncio.run(read())


@dataclass(frozen=True)
class ProcessUsage:
    """CPU seconds a named process (tree) used during one run, and its peak RSS in KiB."""

    name: str
    cpu_seconds: float
    peak_rss_kib: int


def cpu_seconds(pid: int, include_reaped_children: bool = False) -> float:
    """utime+stime of a process in seconds (0 when it is gone)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return 0.0
    # Fields after the parenthesised command name; utime is field 14 of the whole line.
    fields = stat.rpartition(")")[2].split()
    ticks = int(fields[11]) + int(fields[12])
    if include_reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _CLOCK_TICKS


def peak_rss_kib(pid: int) -> int:
    try:
        status = (PROC / str(pid) / "status").read_text()
    except OSError:
        return 0
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) if found else 0


def reset_peak_rss(pid: int) -> None:
    """Start a new RSS high-water mark (needs permission on the process; best effort)."""
    with contextlib.suppress(OSError):
        (PROC / str(pid) / "clear_refs").write_text("5")


def children_of(pid: int) -> list[int]:
    """Direct children of `pid` (Postfix's master forks its daemons)."""
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def find_processes(marker: bytes) -> list[int]:
    """Pids whose command line contains `marker` (e.g. b"relaystream\\0run\\0ingest")."""
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in cmdline:
            found.append(int(entry.name))
    return found


class UsageProbe:
    """CPU and memory of named processes over one run: `start()` before, `finish()` after.

    A `tree` process counts its children too, as they are at each end of the run, plus what the
    children that exited in between used (reaped by the parent).
    """

    def __init__(self, processes: dict[str, int], trees: Iterable[str] = ()) -> None:
        self.processes = processes
        self.trees = set(trees)
        self._cpu_at_start: dict[str, float] = {}

    def _pids(self, name: str) -> list[int]:
        pid = self.processes[name]
        return [pid, *children_of(pid)] if name in self.trees else [pid]

    def _cpu(self, name: str) -> float:
        pid = self.processes[name]
        tree = name in self.trees
        own = cpu_seconds(pid, include_reaped_children=tree)
        return own + (sum(cpu_seconds(child) for child in children_of(pid)) if tree else 0.0)

    def start(self) -> None:
        for name in self.processes:
            for pid in self._pids(name):
                reset_peak_rss(pid)
            self._cpu_at_start[name] = self._cpu(name)

    def finish(self) -> list[ProcessUsage]:
        return [
            ProcessUsage(
                name=name,
                cpu_seconds=self._cpu(name) - self._cpu_at_start.get(name, 0.0),
                peak_rss_kib=sum(peak_rss_kib(pid) for pid in self._pids(name)),
            )
            for name in self.processes
        ]


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of ascending values (`fraction` in 0..1)."""
    if not sorted_values:
        return float("nan")
    rank = min(len(sorted_values), max(1, math.ceil(fraction * len(sorted_values))))
    return sorted_values[rank - 1]


@dataclass(frozen=True)
class LogLatencies:
    """Reception-to-delivery latencies in ms of the messages of one run; `missing` = no
    Delivery record (yet) for a Reception. `received` and `delivered` are the records'
    times (epoch ms) by message id."""

    milliseconds: list[float]
    missing: int
    received: dict[str, float]
    delivered: dict[str, float]


def _millis(value: object) -> float:
    assert isinstance(value, datetime)
    return value.timestamp() * 1000.0


async def reception_to_delivery(
    bootstrap: str,
    log_topic: str,
    recipient_tag: str,
    since: datetime,
    expected: int,
    within_s: float = 60.0,
) -> LogLatencies:
    """Read the log topic (from `since`) until every one of `expected` messages whose
    recipient contains `recipient_tag` has its Delivery record, or `within_s` passed."""
    deadline = time.monotonic() + within_s
    while True:
        received: dict[str, float] = {}
        delivered: dict[str, float] = {}
        async for replayed in replay_topic(bootstrap, log_topic, since=since):
            if replayed.value is None:
                continue
            try:
                _, record = decode(replayed.value, expected="LogRecord")
            except DecodeError:
                continue
            if not any(recipient_tag in r for r in record["recipients"]):
                continue
            if record["type"] == "Reception":
                received[record["id"]] = _millis(record["timestamp"])
            elif record["type"] == "Delivery":
                delivered[record["id"]] = _millis(record["timestamp"])
        paired = [delivered[i] - received[i] for i in received if i in delivered]
        if len(paired) >= expected or time.monotonic() > deadline:
            missing = max(0, expected - len(paired))
            return LogLatencies(sorted(paired), missing, received, delivered)
        await asyncio.sleep(0.5)


# Where reception-to-delivery time goes, split at the routing decision and the first release.
STAGES = ("reception->decision", "decision->release", "release->delivery")


async def stage_medians(
    bootstrap: str,
    decisions_topic: str,
    attempts_topic: str,
    latencies: LogLatencies,
    since: datetime,
) -> dict[str, float]:
    """Median ms of each of STAGES over the run's delivered messages (first attempts):
    - reception->decision: ingest's commit, then routing's fetch, linger and policy;
    - decision->release: routing's commit, then the scheduler's fetch and release;
    - release->delivery: the release's produce, delivery's fetch and the SMTP transaction.
    Empty when no message has all four times."""
    ids = latencies.delivered.keys() & latencies.received.keys()
    decided = await _times_by_id(
        bootstrap, decisions_topic, "RoutingDecision", "decided_at", ids, since
    )
    released = await _times_by_id(
        bootstrap, attempts_topic, "DeliveryRequest", "released_at", ids, since
    )
    complete = [i for i in ids if i in decided and i in released]
    if not complete:
        return {}
    received, delivered = latencies.received, latencies.delivered
    hops = (
        [decided[i] - received[i] for i in complete],
        [released[i] - decided[i] for i in complete],
        [delivered[i] - released[i] for i in complete],
    )
    return {stage: statistics.median(hop) for stage, hop in zip(STAGES, hops, strict=True)}


async def _times_by_id(
    bootstrap: str, topic: str, schema: str, field: str, ids: set[str], since: datetime
) -> dict[str, float]:
    """`field` (a timestamp) of each record of `ids` on `topic`; for attempts the first."""
    times: dict[str, float] = {}
    async for replayed in replay_topic(bootstrap, topic, since=since):
        if replayed.value is None:
            continue
        try:
            _, record = decode(replayed.value, expected=schema)
        except DecodeError:
            continue
        if record["id"] in ids and record.get("attempt", 0) == 0:
            times[record["id"]] = _millis(record[field])
    return times
