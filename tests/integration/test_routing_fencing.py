"""A silent routing instance cannot commit after its group gave its partition away.

aiokafka's transactional offset commit (TxnOffsetCommit v0) carries no group generation, so
the group coordinator would accept the offsets of an expelled member. What fences such a
zombie is the broker aborting its open transaction first (core/kafka/fencing.py): this test
runs the case on the real broker with settings that keep the rule, scaled down (a 2 s
transaction timeout and a 14 s session; the broker checks for timed-out transactions every
10 s, Kafka's default, as the test broker runs).

Instance A fetches a record, begins a transaction, sends an output record and the consumed
offsets, and then its event loop stalls: no heartbeats, nothing. Instance B joins the group
and is given the partition once A's session expired. Then A wakes up at once and commits (the
earliest moment its commit could route a record twice): the commit must be refused, A's output
must never be visible to a read_committed reader, and its offsets must not be committed.
The same with A stalling before its transaction began, while it transformed the batch: then
the broker has nothing to abort, and what refuses A is the membership check the transaction
loop makes before it commits (`transact` in core/kafka/transactional_loop.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass, field

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata
from routing_support import committed_offsets

from relaystream.core.kafka.batches import Outgoing
from relaystream.core.kafka.fencing import BROKER_ABORT_CHECK_INTERVAL_MS, zombie_is_fenced
from relaystream.core.kafka.transactional_loop import transact

TRANSACTION_TIMEOUT_MS = 2_000
HEARTBEAT_INTERVAL_MS = 1_000
# The broker's group.min.session.timeout.ms is 6 s; the rule needs more than 2 + 10 + 1 s.
SESSION_TIMEOUT_MS = 14_000
ZOMBIE_VALUE = b"routed by the zombie"
WAIT_SECONDS = 90.0


@dataclass
class Zombie:
    """What instance A did, told to the test from A's own thread."""

    stall_before_transaction: bool
    stalled: threading.Event = field(default_factory=threading.Event)
    wake_up: threading.Event = field(default_factory=threading.Event)
    stalled_at: float = 0.0
    commit_error: BaseException | None = None
    committed: bool = False
    errors: list[BaseException] = field(default_factory=list)


def consumer(bootstrap: str, group: str, name: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id=name,
        group_id=group,
        group_instance_id=name,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
    )


async def run_zombie(bootstrap: str, source: str, out: str, group: str, zombie: Zombie) -> None:
    """Instance A, on an event loop of its own that the stall blocks whole."""

    def stall() -> None:
        zombie.stalled_at = time.monotonic()
        zombie.stalled.set()
        # A blocking wait holds this event loop, heartbeats included.
        zombie.wake_up.wait(WAIT_SECONDS)

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id=f"{group}-a",
        enable_idempotence=True,
        acks="all",
        transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
    )
    member = consumer(bootstrap, group, "a")
    await producer.start()
    member.subscribe([source])
    await member.start()
    try:
        batch: dict[TopicPartition, list[object]] = {}
        async with asyncio.timeout(WAIT_SECONDS):
            while not batch:
                batch = await member.getmany(timeout_ms=200)
        ((tp, records),) = batch.items()
        if zombie.stall_before_transaction:
            stall()
            try:
                await transact(
                    producer, member, group, batch, [Outgoing(out, 0, None, ZOMBIE_VALUE)]
                )
                zombie.committed = True
            except KafkaError as error:
                zombie.commit_error = error
            return
        await producer.begin_transaction()
        await (await producer.send(out, ZOMBIE_VALUE, partition=0))
        last = records[-1].offset  # type: ignore[attr-defined]
        await producer.send_offsets_to_transaction({tp: OffsetAndMetadata(last + 1, "")}, group)
        stall()
        try:
            await producer.commit_transaction()
            zombie.committed = True
        except KafkaError as error:
            zombie.commit_error = error
    except BaseException as error:
        zombie.errors.append(error)
        raise
    finally:
        with contextlib.suppress(Exception):
            await member.stop()
        with contextlib.suppress(Exception):
            await producer.stop()


async def committed_values(bootstrap: str, topic: str) -> list[bytes]:
    reader = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False
    )
    await reader.start()
    try:
        tp = TopicPartition(topic, 0)
        reader.assign([tp])
        await reader.seek_to_beginning(tp)
        # The last stable offset: nothing below it is still in an open transaction.
        end = (await reader.end_offsets([tp]))[tp]
        values: list[bytes] = []
        async with asyncio.timeout(WAIT_SECONDS):
            while await reader.position(tp) < end:
                for records in (await reader.getmany(timeout_ms=200)).values():
                    values += [record.value for record in records]
        return values
    finally:
        await reader.stop()


@pytest.mark.parametrize(
    "stall_before_transaction",
    [
        pytest.param(False, id="stall-in-the-transaction"),
        # A stall before the transaction began at the broker (while the batch is being
        # transformed) leaves nothing for the broker to abort; the membership check refuses it.
        pytest.param(True, id="stall-before-the-transaction"),
    ],
)
async def test_a_stalled_instance_cannot_commit_after_its_partition_moved(
    kafka_bootstrap: str, topic_prefix: str, stall_before_transaction: bool
) -> None:
    assert zombie_is_fenced(
        transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
        broker_abort_check_interval_ms=BROKER_ABORT_CHECK_INTERVAL_MS,
    )
    source, out, group = f"{topic_prefix}accepted", f"{topic_prefix}queued", f"{topic_prefix}g"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1) for name in (source, out)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(source, b"accepted message", partition=0)
    finally:
        await producer.stop()

    zombie = Zombie(stall_before_transaction)
    instance_a = asyncio.create_task(
        asyncio.to_thread(asyncio.run, run_zombie(kafka_bootstrap, source, out, group, zombie))
    )
    try:
        assert await asyncio.to_thread(zombie.stalled.wait, WAIT_SECONDS), zombie.errors
        # Instance B joins; it is given the partition once A's session has expired.
        member_b = consumer(kafka_bootstrap, group, "b")
        member_b.subscribe([source])
        await member_b.start()
        try:
            async with asyncio.timeout(WAIT_SECONDS):
                while TopicPartition(source, 0) not in member_b.assignment():
                    await member_b.getmany(timeout_ms=200)
            # A wakes up at the first moment its commit could do harm: the partition has just
            # moved. By the rule the broker has aborted A's transaction already.
            zombie.wake_up.set()
            assigned_after = time.monotonic() - zombie.stalled_at
            await asyncio.wait_for(instance_a, WAIT_SECONDS)
        finally:
            await member_b.stop()
    finally:
        zombie.wake_up.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(instance_a, WAIT_SECONDS)

    # The group waited for A's session: the stall outlasted the transaction timeout and the
    # broker's abort check.
    assert assigned_after > (TRANSACTION_TIMEOUT_MS + BROKER_ABORT_CHECK_INTERVAL_MS) / 1000
    assert not zombie.committed, "the zombie's transaction committed"
    assert zombie.commit_error is not None
    print(f"B assigned {assigned_after:.1f} s into A's stall; A's commit: {zombie.commit_error!r}")
    assert ZOMBIE_VALUE not in await committed_values(kafka_bootstrap, out)
    assert await committed_offsets(kafka_bootstrap, group, source) == {}
