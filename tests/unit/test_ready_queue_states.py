"""The ready-queue states the admin API reads from the `ready-queues` topic: latest per
queue, tombstones and expiry; and what delivery publishes for a pool."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from relaystream.core.domain.admin_rules import AdminAction, AdminRule, AdminRuleSet
from relaystream.core.events.codec import DecodeError, encode
from relaystream.core.events.examples import example_records
from relaystream.core.events.records import ReadyQueueState
from relaystream.core.kafka.dead_letter import RecordRejected
from relaystream.core.kafka.ready_queue_states import ReadyQueueStates
from relaystream.delivery.pool import PoolKey, PoolLimits, PoolRegistry
from relaystream.delivery.ready_queue_publisher import ReadyQueuePublisher
from relaystream.delivery.smtp_session import SessionOptions

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def state(name: str, expires_in: timedelta = timedelta(minutes=1)) -> ReadyQueueState:
    value: ReadyQueueState = dict(example_records()["ReadyQueueState"])  # type: ignore[assignment]
    return {**value, "name": name, "updated_at": EPOCH, "expires_at": EPOCH + expires_in}


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def test_latest_state_per_queue_tombstones_and_expiry() -> None:
    states = ReadyQueueStates()
    states.apply(b"a", encode("ReadyQueueState", state("a")))
    states.apply(b"b", encode("ReadyQueueState", state("b", timedelta(seconds=1))))
    newer = {**state("a"), "connection_count": 9}
    states.apply(b"a", encode("ReadyQueueState", newer))
    assert states.current(ms(EPOCH))["a"]["connection_count"] == 9
    assert list(states.current(ms(EPOCH))) == ["a", "b"]
    # b's process stopped without a tombstone: gone once it expired.
    assert list(states.current(ms(EPOCH + timedelta(seconds=2)))) == ["a"]
    states.apply(b"a", None)
    assert "a" not in states.current(ms(EPOCH))


def test_a_bad_record_is_rejected_and_removes_its_key() -> None:
    states = ReadyQueueStates()
    states.apply(b"a", encode("ReadyQueueState", state("a")))
    with pytest.raises(RecordRejected):
        states.apply_or_reject(b"a", b"\x00not avro")
    assert states.current(ms(EPOCH)) == {}
    with pytest.raises(ValueError, match="not its ready queue"):
        states.apply(b"other", encode("ReadyQueueState", state("a")))
    with pytest.raises(DecodeError):
        states.apply(b"a", b"junk")


def test_publisher_reports_counts_states_suspension_and_path() -> None:
    pools = PoolRegistry(PoolLimits(connection_limit=3), SessionOptions(ehlo_name="me.test"))
    pool = pools.pool(PoolKey("ip-2", "mx.example.com"))
    pool.ready_count = 2
    pool.states["connection_limited"] = EPOCH.timestamp()
    rules = AdminRuleSet()
    name = "ip-2->mx.example.com@smtp_client"
    rules.put(
        AdminRule(
            id="s",
            action=AdminAction.SUSPEND_READY_Q,
            reason="block",
            created_at=ms(EPOCH),
            expires_at=ms(EPOCH + timedelta(hours=1)),
            queues=(name,),
        )
    )
    publisher = ReadyQueuePublisher(
        None,  # type: ignore[arg-type]  # state_of does not produce
        "t",
        pools,
        rules,
        node="n1",
        refresh_seconds=30,
    )
    published = publisher.state_of(pool, EPOCH + timedelta(seconds=1))
    assert published["name"] == name and published["node"] == "n1"
    assert (published["connection_count"], published["ready_count"]) == (0, 2)
    assert published["states"] == {"connection_limited": EPOCH, "suspended": EPOCH}
    assert published["path_config"]["connection_limit"] == "3"
    assert published["expires_at"] == EPOCH + timedelta(seconds=91)
    # It encodes as the schema says.
    encode("ReadyQueueState", published)
