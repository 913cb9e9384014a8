"""The submit loop's conversion of one `submit` record into the records of its transaction."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from relaystream.core.events.codec import decode, encode
from relaystream.core.kafka.dead_letter import dead_letter_id
from relaystream.core.kafka.submission import submission_event
from relaystream.core.kafka.topics import declare_topics, partition_for_key
from relaystream.core.policy import policy_from_source
from relaystream.ingest.message_ids import submission_message_id
from relaystream.ingest.reception import ReceptionPolicy
from relaystream.ingest.submissions import AcceptedPartitions, SubmissionConverter

TOPICS = declare_topics()
PARTITIONS = AcceptedPartitions(accepted=7, dead_letter=3)
CONTENT = b"Subject: hi\r\n\r\nhello\r\n"


@dataclass(frozen=True)
class Record:
    value: bytes | None
    topic: str = TOPICS.submit.name
    partition: int = 2
    offset: int = 41
    timestamp: int = 1_777_000_000_000
    key: bytes | None = b"k"


def converter() -> SubmissionConverter:
    return SubmissionConverter(
        topics=TOPICS,
        partitions=PARTITIONS,
        max_recipients=10,
        max_message_size=1000,
        hostname="mx.test",
        service="ingest",
        reception=ReceptionPolicy(policy_from_source("-- no handler\n", "default.lua")),
        clock_ms=lambda: 5,
    )


def submitted(submission_id: str, recipients: list[str]) -> Record:
    event = submission_event(
        "app@example.com", recipients, CONTENT, submission_id=submission_id, meta={"t": 1}
    )
    return Record(encode("MessageSubmitted", event))


@given(
    st.text(min_size=1, max_size=40),
    st.lists(st.from_regex(r"[a-z]{1,8}@[a-z]{1,8}\.example", fullmatch=True), min_size=1),
)
def test_a_submission_becomes_its_messages_on_one_partition_the_same_each_time(
    submission_id: str, recipients: list[str]
) -> None:
    record = submitted(submission_id, recipients[:10])
    first, again = converter()(record), converter()(record)
    assert first == again  # converted again after a crash: the same bytes, the same partition
    assert first.rejections == () and first.accepted == len(recipients[:10])
    expected_partition = partition_for_key(submission_id.encode(), PARTITIONS.accepted)
    assert {out.partition for out in first.outgoing} == {expected_partition}
    assert {out.topic for out in first.outgoing} == {TOPICS.accepted.name}
    ids = [submission_message_id(submission_id, i) for i in range(len(recipients[:10]))]
    assert [out.key for out in first.outgoing] == [i.encode() for i in ids]
    assert all(out.value is not None for out in first.outgoing)
    events = [decode(out.value, "MessageAccepted")[1] for out in first.outgoing if out.value]
    assert [event["recipient"] for event in events] == recipients[:10]
    assert {event["transaction_id"] for event in events} == {submission_id}


def test_an_invalid_submission_becomes_a_dead_letter_with_the_reason() -> None:
    record = submitted("bad-1", ["ok@example.org", "user@[::1]"])
    result = converter()(record)
    assert result.accepted == 0 and len(result.outgoing) == 1
    (dead,) = result.outgoing
    (rejection,) = result.rejections
    assert rejection.error_type == "validation" and rejection.reason.startswith("recipients[1]:")
    assert dead.topic == TOPICS.dead_letter.name
    assert dead.key == dead_letter_id(TOPICS.submit.name, 2, 41).encode()
    assert dead.partition == partition_for_key(dead.key, PARTITIONS.dead_letter)
    assert dead.value is not None
    letter = decode(dead.value, "DeadLetter")[1]
    assert letter["reason"] == rejection.reason and letter["service"] == "ingest"
    assert letter["value"] == record.value


def test_undecodable_bytes_and_tombstones_become_dead_letters() -> None:
    junk = converter()(Record(b"not an event"))
    assert [r.error_type for r in junk.rejections] == ["decode"] and junk.accepted == 0
    tombstone = converter()(Record(None))
    assert [r.reason for r in tombstone.rejections] == ["tombstone on the submit topic"]
    assert [out.topic for out in tombstone.outgoing] == [TOPICS.dead_letter.name]
