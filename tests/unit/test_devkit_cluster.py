"""The local cluster's layout and the chaos measurements' pure parts."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from relaystream.core.kafka.topics import TopicSettings
from relaystream_devkit.broker import Quorum, render_server_properties
from relaystream_devkit.chaos import BROKER, default_kills
from relaystream_devkit.cluster import replication_for, topic_settings_for, voter_count
from relaystream_devkit.dev import SERVICE_NAMES
from relaystream_devkit.scaling import max_gap


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines())


def test_three_brokers_replicate_as_production_does() -> None:
    production = TopicSettings.production()
    three = topic_settings_for(3, TopicSettings(prefix="p.", partitions=6))
    assert (three.replication_factor, three.min_insync_replicas) == (
        production.replication_factor,
        production.min_insync_replicas,
    )
    assert (three.prefix, three.partitions) == ("p.", 6)


@given(st.integers(min_value=1, max_value=9))
def test_losing_one_broker_never_blocks_acks_all_writes(brokers: int) -> None:
    replication = replication_for(brokers)
    assert 1 <= replication.min_insync <= replication.replicas <= brokers
    # One node down leaves min.insync replicas (except on a single node, which has none left).
    assert brokers == 1 or replication.replicas - 1 >= replication.min_insync
    # An odd number of voters: one may die and a majority still runs (with 3 or more).
    assert voter_count(brokers) in (1, 3)


def test_voters_run_broker_and_controller_others_only_broker(tmp_path: Path) -> None:
    quorum = Quorum(voters={1: 9101, 2: 9102, 3: 9103}, replicas=3, min_insync=2)
    voter = properties(
        render_server_properties(
            port=9001, controller_port=9102, data_dir=tmp_path, node_id=2, quorum=quorum
        )
    )
    assert voter["process.roles"] == "broker,controller"
    assert voter["controller.quorum.voters"] == (
        "1@127.0.0.1:9101,2@127.0.0.1:9102,3@127.0.0.1:9103"
    )
    assert voter["listeners"] == "PLAINTEXT://127.0.0.1:9001,CONTROLLER://127.0.0.1:9102"
    assert voter["transaction.state.log.replication.factor"] == "3"
    assert voter["transaction.state.log.min.isr"] == "2"
    broker_only = properties(
        render_server_properties(
            port=9004, controller_port=9104, data_dir=tmp_path, node_id=4, quorum=quorum
        )
    )
    assert broker_only["process.roles"] == "broker"
    assert broker_only["listeners"] == "PLAINTEXT://127.0.0.1:9004"


def test_a_single_node_is_its_own_voter_with_one_replica(tmp_path: Path) -> None:
    single = properties(
        render_server_properties(port=9092, controller_port=9093, data_dir=tmp_path)
    )
    assert single["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert single["offsets.topic.replication.factor"] == "1"


def test_a_broker_kill_only_with_a_cluster() -> None:
    assert default_kills(1) == SERVICE_NAMES
    three = default_kills(3)
    assert three.count(BROKER) == 1
    assert sorted(k for k in three if k != BROKER) == sorted(SERVICE_NAMES)


def test_max_gap_is_the_longest_pause_between_consecutive_arrivals() -> None:
    assert max_gap([3.0, 1.0, 1.5, 7.5, 8.0]) == 4.5
    assert max_gap([2.0]) == 0.0
    assert max_gap([]) == 0.0
