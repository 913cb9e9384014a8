"""What one `accepted` record becomes, without Kafka: the outgoing records, their topics,
keys and partitions, and the dead-letter copies of records that cannot be routed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from relaystream.core.events.codec import decode, encode
from relaystream.core.events.meta import encode_meta
from relaystream.core.events.records import MessageAccepted
from relaystream.core.kafka.batches import Outgoing
from relaystream.core.kafka.topics import (
    TopicCatalog,
    TopicSettings,
    declare_topics,
    partition_for_key,
    partition_for_queue,
)
from relaystream.core.policy import policy_from_source
from relaystream.routing.router import OutputPartitions, Router

RECEIVED = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
DECIDED = datetime(2026, 1, 2, 3, 4, 7, tzinfo=UTC)
FAILED_AT_MS = 1_767_000_000_000
QUEUE_PARTITIONS = 7
OTHER_PARTITIONS = 5
DEAD_LETTER_PARTITIONS = 2
MESSAGE_ID = "0123456789abcdef0123456789abcdef"

POLICY = """\
kumo.on('smtp_server_message_received', function(msg)
  local user = msg:recipient().user
  if user == 'drop' then msg:set_meta('queue', 'null')
  elseif user == 'reject' then kumo.reject(550, '5.7.1 not from here')
  elseif user == 'boom' then error('policy bug')
  else msg:set_meta('routing_domain', 'smart.example')
  end
end)
"""


@dataclass(frozen=True)
class Consumed:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@pytest.fixture(scope="module")
def topics() -> TopicCatalog:
    return declare_topics(TopicSettings(prefix="t.", queue_partitions=QUEUE_PARTITIONS))


@pytest.fixture(scope="module")
def router(topics: TopicCatalog) -> Router:
    return Router(
        policy=policy_from_source(POLICY, "policy.lua"),
        topics=topics,
        partitions=OutputPartitions(
            queued=QUEUE_PARTITIONS,
            decisions=OTHER_PARTITIONS,
            log=OTHER_PARTITIONS,
            dead_letter=DEAD_LETTER_PARTITIONS,
        ),
        service="routing",
        clock=lambda: DECIDED,
        clock_ms=lambda: FAILED_AT_MS,
    )


def accepted(recipient: str) -> MessageAccepted:
    return {
        "id": MESSAGE_ID,
        "sender": "sender@origin.example",
        "recipient": recipient,
        "content": b"Subject: hi\r\n\r\nbody\r\n",
        "meta": encode_meta({"tenant": "acme"}),
        "reception_protocol": "ESMTP",
        "received_at": RECEIVED,
        "transaction_id": None,
    }


def consumed(value: bytes | None, key: bytes | None = MESSAGE_ID.encode()) -> Consumed:
    return Consumed(topic="t.accepted", partition=1, offset=42, key=key, value=value)


def by_topic(outgoing: tuple[Outgoing, ...]) -> dict[str, Outgoing]:
    found = {out.topic: out for out in outgoing}
    assert len(found) == len(outgoing), "one record per topic"
    return found


def test_a_queued_message_goes_to_decisions_log_and_its_queue_partition(
    router: Router, topics: TopicCatalog
) -> None:
    routed = router.route(consumed(encode("MessageAccepted", accepted("rcpt@example.com"))))
    assert routed.outcome == "QUEUED"
    assert routed.rejections == ()
    out = by_topic(routed.outgoing)
    assert set(out) == {topics.decisions.name, topics.log.name, topics.queued.name}
    assert all(record.key == MESSAGE_ID.encode() for record in out.values())
    queued = out[topics.queued.name]
    _, value = decode(queued.value, expected="QueuedMessage")
    assert value["queue"] == "acme@example.com!smart.example"
    assert queued.partition == partition_for_queue(value["queue"], QUEUE_PARTITIONS)
    for topic in (topics.decisions.name, topics.log.name):
        assert out[topic].partition == partition_for_key(MESSAGE_ID.encode(), OTHER_PARTITIONS)
    _, decision = decode(out[topics.decisions.name].value, expected="RoutingDecision")
    assert decision["decided_at"] == DECIDED


def test_routing_the_same_record_twice_gives_the_same_bytes(router: Router) -> None:
    record = consumed(encode("MessageAccepted", accepted("rcpt@example.com")))
    assert router.route(record) == router.route(record)


@pytest.mark.parametrize(
    ("recipient", "outcome"),
    [("drop@example.com", "DISCARDED"), ("reject@example.com", "REJECTED")],
)
def test_discarded_and_rejected_messages_are_not_queued(
    router: Router, topics: TopicCatalog, recipient: str, outcome: str
) -> None:
    routed = router.route(consumed(encode("MessageAccepted", accepted(recipient))))
    assert routed.outcome == outcome
    assert set(by_topic(routed.outgoing)) == {topics.decisions.name, topics.log.name}


def test_a_policy_failure_is_rejected_and_dead_lettered_for_replay(
    router: Router, topics: TopicCatalog
) -> None:
    original = encode("MessageAccepted", accepted("boom@example.com"))
    routed = router.route(consumed(original))
    assert routed.outcome == "REJECTED"
    out = by_topic(routed.outgoing)
    assert set(out) == {topics.decisions.name, topics.log.name, topics.dead_letter.name}
    _, dead = decode(out[topics.dead_letter.name].value, expected="DeadLetter")
    assert dead["error_type"] == "policy"
    assert dead["value"] == original
    assert [r.error_type for r in routed.rejections] == ["policy"]


def test_an_undecodable_record_is_only_dead_lettered_with_its_origin(
    router: Router, topics: TopicCatalog
) -> None:
    routed = router.route(consumed(b"not an event", key=b"poison"))
    assert routed.outcome is None
    (out,) = routed.outgoing
    # Keyed by the source coordinates (the dead letter's id), not the source key.
    assert (out.topic, out.key) == (topics.dead_letter.name, b"t.accepted/1/42")
    assert out.partition == partition_for_key(b"t.accepted/1/42", DEAD_LETTER_PARTITIONS)
    _, dead = decode(out.value, expected="DeadLetter")
    assert dead["error_type"] == "decode"
    assert (dead["source_topic"], dead["source_partition"], dead["source_offset"]) == (
        "t.accepted",
        1,
        42,
    )
    assert (dead["value"], dead["service"], dead["failed_at"]) == (
        b"not an event",
        "routing",
        datetime.fromtimestamp(FAILED_AT_MS / 1000, UTC),
    )


def test_an_unroutable_record_is_dead_lettered_as_invalid(router: Router) -> None:
    routed = router.route(consumed(encode("MessageAccepted", accepted("no-domain"))))
    assert routed.outcome is None
    assert [r.error_type for r in routed.rejections] == ["validation"]
    assert len(routed.outgoing) == 1


def test_a_tombstone_produces_nothing(router: Router) -> None:
    routed = router.route(consumed(None))
    assert routed.outgoing == ()
    assert routed.outcome is None
