"""The scheduler's pure state: due order, in-flight, leases, outcomes once per attempt."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from relaystream.core.domain.token_bucket import MessageRate, TokenBucket
from relaystream.core.spool.entry import SpoolEntry
from relaystream.scheduling.owned import OwnedPartitions
from relaystream.scheduling.partition import PartitionScheduler
from relaystream.scheduling.state import SchedulerState

LEASE = 60_000


def entry(
    message_id: str,
    due_at: int,
    *,
    offset: int,
    attempts: int = 0,
    queue: str = "example.com",
    partition: int = 0,
) -> SpoolEntry:
    return SpoolEntry(message_id, queue, due_at, attempts, 0, partition, offset)


def no_rate(queue: str) -> MessageRate | None:
    return None


def ids(entries: list[SpoolEntry]) -> list[str]:
    return [e.id for e in entries]


def test_releases_in_due_order_and_not_before_due() -> None:
    state = SchedulerState(LEASE)
    state.apply_queued(entry("b", 2000, offset=1))
    state.apply_queued(entry("a", 1000, offset=2))
    assert state.take_due(999, 10, no_rate) == []
    assert ids(state.take_due(1000, 10, no_rate)) == ["a"]
    assert ids(state.take_due(5000, 10, no_rate)) == ["b"]
    assert state.take_due(10_000, 10, no_rate) == []
    assert state.in_flight_count == 2


def test_older_record_does_not_override_newer() -> None:
    state = SchedulerState(LEASE)
    state.apply_queued(entry("a", 5000, offset=10))
    state.apply_queued(entry("a", 1000, offset=3))
    assert state.take_due(1000, 10, no_rate) == []
    assert ids(state.take_due(5000, 10, no_rate)) == ["a"]


def test_tombstone_removes_and_older_tombstone_is_ignored() -> None:
    state = SchedulerState(LEASE)
    state.apply_queued(entry("a", 0, offset=10))
    state.apply_tombstone("a", 0, 5)
    assert state.message_count == 1
    state.apply_tombstone("a", 0, 11)
    assert state.message_count == 0
    assert state.take_due(10, 10, no_rate) == []


def test_rescheduled_message_is_released_at_its_new_time_only() -> None:
    state = SchedulerState(LEASE)
    state.apply_queued(entry("a", 1000, offset=1))
    state.apply_queued(entry("a", 3000, offset=2))
    assert state.take_due(2000, 10, no_rate) == []
    assert ids(state.take_due(3000, 10, no_rate)) == ["a"]
    assert state.take_due(4000, 10, no_rate) == []


def test_outcome_accepted_once_per_attempt() -> None:
    state = SchedulerState(LEASE)
    state.apply_queued(entry("a", 0, offset=1))
    state.take_due(0, 10, no_rate)
    assert state.accept_outcome("a", 1) is None  # not this attempt
    accepted = state.accept_outcome("a", 0)
    assert accepted is not None and accepted.id == "a"
    assert state.accept_outcome("a", 0) is None
    # Our requeue record (attempts 1) is read back: the message waits for its new due time.
    state.apply_queued(entry("a", 500, offset=2, attempts=1))
    assert state.in_flight("a") is None
    assert state.accept_outcome("a", 0) is None
    assert ids(state.take_due(500, 10, no_rate)) == ["a"]


def test_lease_expiry_releases_the_same_attempt_again() -> None:
    state = SchedulerState(LEASE)
    state.apply_queued(entry("a", 0, offset=1))
    assert ids(state.take_due(0, 10, no_rate)) == ["a"]
    assert state.take_due(LEASE - 1, 10, no_rate) == []
    again = state.take_due(LEASE, 10, no_rate)
    assert ids(again) == ["a"] and again[0].attempts == 0


def test_rebuilt_attempt_is_in_flight_until_its_lease_ends() -> None:
    state = SchedulerState(LEASE)
    state.apply_queued(entry("a", 0, offset=1, attempts=2))
    state.apply_queued(entry("b", 0, offset=2, attempts=2))
    state.note_attempt("a", 2, released_at=1000)
    state.note_attempt("b", 1, released_at=1000)  # an older attempt: b is waiting
    assert ids(state.take_due(2000, 10, no_rate)) == ["b"]
    assert ids(state.take_due(1000 + LEASE, 10, no_rate)) == ["a"]


def test_accepted_outcome_is_not_released_by_lease_expiry() -> None:
    state = SchedulerState(LEASE)
    state.apply_queued(entry("a", 0, offset=1))
    state.take_due(0, 10, no_rate)
    assert state.accept_outcome("a", 0) is not None
    assert state.take_due(10 * LEASE, 10, no_rate) == []
    state.outcome_failed("a", 0)
    assert ids(state.take_due(10 * LEASE, 10, no_rate)) == ["a"]


def test_throttle_limits_releases_per_queue() -> None:
    state = SchedulerState(LEASE)
    for i in range(10):
        state.apply_queued(entry(f"m{i}", 0, offset=i))
    state.apply_queued(entry("other", 0, offset=100, queue="other.example"))

    def rate(queue: str) -> MessageRate | None:
        return MessageRate(2, 1000) if queue == "example.com" else None

    first = ids(state.take_due(0, 100, rate))
    assert sorted(first) == ["m0", "m1", "other"]
    assert state.take_due(499, 100, rate) == []
    assert len(state.take_due(500, 100, rate)) == 1
    assert state.next_wakeup(500) == 1001


def test_a_stale_record_of_an_earlier_attempt_does_not_release_that_attempt_again() -> None:
    # Found by the property below: attempt 0 released, its outcome applied (attempts 1), then
    # a later duplicate of the attempt-0 record arrives.
    state = SchedulerState(LEASE)
    state.apply_queued(entry("a", 0, offset=1, attempts=0))
    assert [e.attempts for e in state.take_due(0, 10, no_rate)] == [0]
    state.apply_queued(entry("a", 0, offset=2, attempts=1))
    state.apply_queued(entry("a", 0, offset=3, attempts=0))
    released = state.take_due(0, 10, no_rate)
    assert [(e.attempts, e.offset) for e in released] == [(1, 3)]


def partition_scheduler(partition: int, *entries: SpoolEntry) -> PartitionScheduler:
    state = SchedulerState(LEASE)
    for one in entries:
        state.apply_queued(one)
    return PartitionScheduler(partition, state, 0, build_seconds=0.0)


def test_a_dropped_partition_releases_nothing_the_others_keep_their_state() -> None:
    owned = OwnedPartitions(
        [
            partition_scheduler(0, entry("a", 0, offset=1, partition=0)),
            partition_scheduler(1, entry("b", 0, offset=1, partition=1, queue="b.example")),
        ]
    )
    kept = owned.get(1)
    owned.drop(0)
    assert ids(owned.take_due(0, 10, no_rate)) == ["b"]
    assert owned.get(1) is kept and owned.in_flight("b") is not None
    assert owned.entry("a") is None


def test_token_bucket_next_token_time_is_exact_enough() -> None:
    bucket = TokenBucket(MessageRate(1, 1000), 0)
    assert bucket.try_take(0)
    assert not bucket.try_take(999)
    at = bucket.next_token_at(999)
    assert bucket.try_take(at)


# --- properties ---------------------------------------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("queued"),
            st.sampled_from("abcd"),
            st.integers(0, 5000),
            st.integers(0, 3),
            st.sampled_from(["q1", "q2"]),
        ),
        st.tuples(st.just("tombstone"), st.sampled_from("abcd")),
        st.tuples(st.just("tick"), st.integers(0, 3 * LEASE)),
        st.tuples(st.just("outcome"), st.sampled_from("abcd"), st.integers(0, 3)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_never_released_twice_for_an_attempt_within_its_lease(
    ops: list[tuple[object, ...]],
) -> None:
    state = SchedulerState(LEASE)
    now = 0
    last_release: dict[tuple[str, int], int] = {}
    for offset, op in enumerate(ops, start=1):
        if op[0] == "queued":
            _, mid, due, attempts, queue = op
            assert isinstance(mid, str) and isinstance(due, int) and isinstance(queue, str)
            assert isinstance(attempts, int)
            state.apply_queued(entry(mid, due, offset=offset, attempts=attempts, queue=queue))
        elif op[0] == "tombstone":
            assert isinstance(op[1], str)
            state.apply_tombstone(op[1], 0, offset)
            # A message queued again after its tombstone is a new message as far as the log
            # says (e.g. a duplicate from upstream): its attempts start over.
            last_release = {k: v for k, v in last_release.items() if k[0] != op[1]}
        elif op[0] == "outcome":
            mid, attempt = op[1], op[2]
            assert isinstance(mid, str) and isinstance(attempt, int)
            state.accept_outcome(mid, attempt)
        else:
            step = op[1]
            assert isinstance(step, int)
            now += step
            for released in state.take_due(now, 1000, no_rate):
                assert released.due_at <= now, "released before due"
                key = (released.id, released.attempts)
                previous = last_release.get(key)
                # The same attempt again only after its lease ran out without an outcome.
                assert previous is None or now - previous >= LEASE
                last_release[key] = now


@settings(max_examples=200, deadline=None)
@given(st.sampled_from("abc"), st.integers(0, 3), st.integers(0, 2))
def test_applying_the_same_outcome_twice_changes_nothing(
    mid: str, attempt: int, attempts: int
) -> None:
    state = SchedulerState(LEASE)
    for n, other in enumerate("abc"):
        state.apply_queued(entry(other, 0, offset=n, attempts=attempts))
    state.take_due(0, 10, no_rate)
    state.accept_outcome(mid, attempt)
    snapshot = {m: (state.entry(m), state.in_flight(m)) for m in "abc"}
    assert state.accept_outcome(mid, attempt) is None
    assert {m: (state.entry(m), state.in_flight(m)) for m in "abc"} == snapshot


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 20),
    st.integers(1, 5000),
    st.lists(st.integers(0, 3000), min_size=1, max_size=40),
)
def test_throttled_release_never_exceeds_the_rate(
    limit: int, period_ms: int, steps: list[int]
) -> None:
    rate = MessageRate(limit, period_ms)
    state = SchedulerState(10**12)
    for i in range(500):
        state.apply_queued(entry(f"m{i}", 0, offset=i))
    now = 0
    released_at: list[int] = []
    for step in steps:
        now += step
        released_at += [now] * len(state.take_due(now, 10_000, lambda q: rate))
    # Over any window [start, end] at most the burst plus the refill of the window passes.
    for start_index, start in enumerate(released_at):
        for end_index in range(start_index, len(released_at)):
            window = released_at[end_index] - start
            count = end_index - start_index + 1
            assert count <= limit + window * limit / period_ms + 1e-9
