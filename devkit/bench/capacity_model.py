"""The capacity model of docs/capacity.md: instances, partitions, broker disk, network and
scheduler memory for a given number of messages a day. Prints a Markdown table; measures nothing.

    .venv/bin/python devkit/bench/capacity_model.py [--per-day 1e6 1e7 1e8] [--peak-factor 3]

Every input below is either measured (the comment says where) or a stated assumption; change
one here when a new measurement replaces it, and paste the new table into docs/capacity.md.
Retentions, the replication factor and delivery's concurrency come from the code itself.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass

from relaystream.core.kafka.topics import RETAIN_FOREVER_MS, TopicSettings, declare_topics
from relaystream.core.runtime.settings import DeliverySettings

# CPU seconds per 1000 messages (1 recipient, 10 KB), per service: the highest of the warm
# `relaystream bench --scenario 1rcpt-10k --concurrency 32 --sink smtp-sink` runs (README,
# issue 21, and one run after ingest began running the policy at reception: ingest 0.42).
CPU_S_PER_1000 = {
    "ingest": 0.42,
    "routing": 0.24,
    "scheduling": 0.25,
    "delivery": 0.48,
}
# The brokers' CPU seconds per 1000 messages, summed over 3 brokers with the topics at
# replication 3 (min.insync 2): the bench's pipeline on the devkit's 3-node cluster, 2 runs of
# 2000 messages, 1.67 and 1.85 (one broker at replication 1, same way: 0.43 and 0.53).
BROKER_CPU_S_PER_1000_REPLICATION_3 = 1.85
# Bytes on the broker per 10 KB message, one replica, uncompressed: the log segments of a fresh
# broker after 5000 messages of `1rcpt-10k` (docs/capacity.md says how).
BYTES_PER_MESSAGE = {
    "accepted": 11_004,
    "queued": 10_819,
    "attempts": 10_986,
    "decisions": 991,
    "log": 926,
    "outcomes": 205,
}
# Kafka's own topics (__consumer_offsets, __transaction_state, metadata) in the same run.
INTERNAL_BYTES_PER_MESSAGE = 34
# Of the bytes written, what the services read back once in steady state: routing reads
# accepted, scheduling queued and outcomes, delivery attempts and outcomes.
READ_BACK = {"accepted": 1, "queued": 1, "attempts": 1, "outcomes": 2}
# Scheduler index per waiting message (1M messages), and rebuild speed at 10 KB bodies as
# measured on the shared 2-core machine, broker alongside (devkit/bench/
# scheduler_rebuild_bench.py --content-size 10240; 43,000/s per CPU second of the scheduler).
# A rebuild briefly holds about twice the index (780 MiB before the heap is trimmed, 430 after).
SCHEDULER_BYTES_PER_WAITING = 387
REBUILD_TRANSIENT_FACTOR = 2
REBUILD_MESSAGES_PER_S = 17_000
SCHEDULER_MEMORY_LIMIT_BYTES = 2 * 2**30  # k8s/overlays/prod/resources.yaml
SCHEDULER_MEMORY_BUDGET = 0.75  # of the limit

# Assumptions (not measured here).
CPU_TARGET_UTILIZATION = 0.6  # headroom for rebuilds, rebalances and one lost instance
MIN_INSTANCES = 2  # one may die or roll (PodDisruptionBudget maxUnavailable 1)
PARTITION_HEADROOM = 2  # grow twofold without repartitioning (which needs a drain)
PARTITION_MULTIPLE = 6  # divides evenly among 1, 2, 3 or 6 instances
REMOTE_SMTP_TRANSACTION_S = 0.5  # a real MX, connection reused; the bench's sink takes ~1 ms
BACKLOG_FRACTION_OF_DAY = 0.25  # waiting messages to size for: 6 hours of traffic undelivered
REBUILD_TARGET_S = 60.0  # a crashed scheduler's partitions pause about a minute at most
ATTEMPTS_PER_MESSAGE = 1.0  # every retry writes another attempt carrying the body


@dataclass(frozen=True)
class Size:
    per_day: float
    peak_per_s: float
    instances: dict[str, int]
    partitions: int
    queue_partitions: int
    broker_cores: float
    broker_in_mb_s: float
    broker_out_mb_s: float
    disk_per_replica_tb: float
    backlog: int
    scheduler_memory_per_instance_mib: float
    rebuild_per_instance_s: float


def retention_days() -> dict[str, float]:
    """Days each topic keeps its records (None: compacted forever), from the declaration."""
    days = {}
    for spec in declare_topics(TopicSettings.production()):
        role = spec.role.value
        if role in BYTES_PER_MESSAGE and spec.retention_ms != RETAIN_FOREVER_MS:
            days[role] = spec.retention_ms / 86_400_000
    return days


def size_for(per_day: float, peak_factor: float, concurrency: int) -> Size:
    """The deployment for `per_day` messages; `concurrency`: delivery's attempts in flight."""
    replication = TopicSettings.production().replication_factor
    if replication != 3:
        raise ValueError("the brokers' CPU per message was measured at replication 3")
    peak = per_day / 86_400 * peak_factor
    cores = {
        stage: peak * cpu / 1000 / CPU_TARGET_UTILIZATION for stage, cpu in CPU_S_PER_1000.items()
    }
    # A service is one Python process: one core at most.
    instances = {stage: max(MIN_INSTANCES, math.ceil(c)) for stage, c in cores.items()}
    in_flight = peak * REMOTE_SMTP_TRANSACTION_S
    instances["delivery"] = max(instances["delivery"], math.ceil(in_flight / concurrency))
    backlog = int(per_day * BACKLOG_FRACTION_OF_DAY)
    index = backlog * SCHEDULER_BYTES_PER_WAITING * REBUILD_TRANSIENT_FACTOR
    instances["scheduling"] = max(
        instances["scheduling"],
        math.ceil(index / (SCHEDULER_MEMORY_LIMIT_BYTES * SCHEDULER_MEMORY_BUDGET)),
        math.ceil(backlog / REBUILD_MESSAGES_PER_S / REBUILD_TARGET_S),
    )

    def partitions_for(consumers: int) -> int:
        return PARTITION_MULTIPLE * math.ceil(consumers * PARTITION_HEADROOM / PARTITION_MULTIPLE)

    written = sum(BYTES_PER_MESSAGE.values()) + INTERNAL_BYTES_PER_MESSAGE
    read = sum(BYTES_PER_MESSAGE[topic] * times for topic, times in READ_BACK.items())
    days = retention_days()
    retained = sum(
        BYTES_PER_MESSAGE[topic] * d * (ATTEMPTS_PER_MESSAGE if topic == "attempts" else 1)
        for topic, d in days.items()
    )
    return Size(
        per_day=per_day,
        peak_per_s=peak,
        instances=instances,
        partitions=partitions_for(instances["routing"]),
        queue_partitions=partitions_for(max(instances["scheduling"], instances["delivery"])),
        broker_cores=peak * BROKER_CPU_S_PER_1000_REPLICATION_3 / 1000 / CPU_TARGET_UTILIZATION,
        broker_in_mb_s=peak * written * replication / 1e6,
        broker_out_mb_s=peak * (written * (replication - 1) + read) / 1e6,
        disk_per_replica_tb=(per_day * retained + backlog * BYTES_PER_MESSAGE["queued"]) / 1e12,
        backlog=backlog,
        scheduler_memory_per_instance_mib=index / instances["scheduling"] / 2**20,
        rebuild_per_instance_s=backlog / instances["scheduling"] / REBUILD_MESSAGES_PER_S,
    )


def table(sizes: list[Size]) -> str:
    rows: list[tuple[str, Callable[[Size], str]]] = [
        ("peak msg/s", lambda s: f"{s.peak_per_s:,.0f}"),
        (
            "ingest / routing / scheduling / delivery instances",
            lambda s: " / ".join(
                str(s.instances[n]) for n in ("ingest", "routing", "scheduling", "delivery")
            ),
        ),
        (
            "partitions: accepted etc. / queued, attempts, outcomes",
            lambda s: f"{s.partitions} / {s.queue_partitions}",
        ),
        ("broker cores, all brokers", lambda s: f"{s.broker_cores:.1f}"),
        (
            "broker network in / out, all brokers, MB/s",
            lambda s: f"{s.broker_in_mb_s:,.0f} / {s.broker_out_mb_s:,.0f}",
        ),
        ("broker disk per replica, TB (x replicas)", lambda s: f"{s.disk_per_replica_tb:,.2f}"),
        ("waiting messages sized for", lambda s: f"{s.backlog:,}"),
        (
            "scheduler memory per instance, MiB",
            lambda s: f"{s.scheduler_memory_per_instance_mib:,.0f}",
        ),
        ("rebuild of one scheduler's partitions, s", lambda s: f"{s.rebuild_per_instance_s:.0f}"),
    ]
    header = "| | " + " | ".join(f"{s.per_day / 1e6:g}M a day" for s in sizes) + " |"
    lines = [header, "|---" * (len(sizes) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(cell(s) for s in sizes) + " |" for name, cell in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-day", type=float, nargs="+", default=[1e6, 1e7, 1e8])
    parser.add_argument("--peak-factor", type=float, default=3.0)
    parser.add_argument(
        "--delivery-concurrency",
        type=int,
        default=DeliverySettings().consumer_concurrency,
        help="delivery.consumer_concurrency (default: the setting's default)",
    )
    args = parser.parse_args()
    sizes = [size_for(n, args.peak_factor, args.delivery_concurrency) for n in args.per_day]
    print(table(sizes))


if __name__ == "__main__":
    main()
