"""The fault run of `relaystream chaos`, small: two instances of every service, kill -9 under
load, again and again. Nothing answered 250 may be lost; duplicates stay within what was in
flight at the kills. (A fault run like this one found ~500 accepted messages lost when two
routing instances rebalanced; test_routing_rebalance.py pins that case down.)
"""

from __future__ import annotations

import uuid
from pathlib import Path

from child_processes import ends_with_test_run

from relaystream_devkit.chaos import (
    BROKER,
    PAST_SESSION_TIMEOUT_S,
    ChaosPlan,
    SinkCounter,
    read_accepted,
    run_chaos,
)
from relaystream_devkit.cluster import LocalKafkaCluster

MESSAGES = 6000
BROKER_KILL_MESSAGES = 1500


async def test_kill_9_of_routing_and_scheduling_instances_under_load_loses_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    plan = ChaosPlan(
        instances=2,
        messages=MESSAGES,
        rate=100.0,
        sessions=6,
        kills=("routing", "scheduling", "delivery", "routing", "scheduling", "ingest"),
        # Back at once (rejoining under the static id) or expelled first (two rebalances).
        restart_after_s=(PAST_SESSION_TIMEOUT_S, 2.0),
        settle_timeout_s=240.0,
    )
    report = await run_chaos(
        plan,
        bootstrap=kafka_bootstrap,
        state_dir=tmp_path,
        prefix=f"chaos.{uuid.uuid4().hex[:8]}.",
        preexec_fn=ends_with_test_run,
    )
    print(report.to_json())
    assert len(report.kills) == len(plan.kills), "the load ended before every kill"
    # Every message was eventually answered 250 (clients retry on another instance).
    accepted = read_accepted(tmp_path / "accepted.txt")
    assert accepted == {str(n) for n in range(MESSAGES)}
    # Counted again from the sink's files, independently of the report.
    delivered = SinkCounter(tmp_path / "sink").refresh()
    assert sorted(accepted - set(delivered), key=int) == []
    assert report.lost == 0
    assert sum(n - 1 for n in delivered.values()) <= report.in_flight_at_kills


async def test_kill_9_of_a_broker_of_three_under_load_loses_nothing(tmp_path: Path) -> None:
    """Replication 3, min.insync.replicas 2: the broker leading most partitions dies under
    load and comes back; every accepted message still reaches the sink."""
    cluster = LocalKafkaCluster(tmp_path / "kafka", brokers=3)
    bootstrap = cluster.start(timeout_s=240)
    try:
        plan = ChaosPlan(
            instances=1,
            messages=BROKER_KILL_MESSAGES,
            rate=100.0,
            sessions=4,
            kills=(BROKER,),
            settle_timeout_s=180.0,
        )
        report = await run_chaos(
            plan,
            bootstrap=bootstrap,
            state_dir=tmp_path,
            prefix=f"chaos.{uuid.uuid4().hex[:8]}.",
            cluster=cluster,
            preexec_fn=ends_with_test_run,
        )
    finally:
        cluster.stop()
    print(report.to_json())
    (kill,) = report.kills
    assert kill.target.startswith("broker-")
    assert kill.in_sync_again_s is not None, "the broker did not rejoin every ISR"
    accepted = read_accepted(tmp_path / "accepted.txt")
    assert accepted == {str(n) for n in range(BROKER_KILL_MESSAGES)}
    delivered = SinkCounter(tmp_path / "sink").refresh()
    assert sorted(accepted - set(delivered), key=int) == []
    assert report.lost == 0
    assert sum(n - 1 for n in delivered.values()) <= report.in_flight_at_kills
