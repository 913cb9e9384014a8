"""The offset tracker never commits past an unfinished offset."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relaystream.core.kafka.offsets import PartitionOffsets


def test_nothing_started_commits_nothing() -> None:
    offsets = PartitionOffsets()
    assert offsets.committable() is None
    assert offsets.pending_commit() is None


def test_out_of_order_finish_waits_for_the_lowest_unfinished() -> None:
    offsets = PartitionOffsets()
    for offset in (5, 6, 7):
        offsets.started(offset)
    offsets.finished(7)
    assert offsets.committable() == 5
    offsets.finished(5)
    assert offsets.committable() == 6
    offsets.finished(6)
    assert offsets.committable() == 8


def test_gaps_from_compaction_do_not_block() -> None:
    offsets = PartitionOffsets()
    offsets.started(3)
    offsets.started(10)
    offsets.finished(3)
    assert offsets.committable() == 10
    offsets.finished(10)
    assert offsets.committable() == 11


def test_pending_commit_only_when_moved() -> None:
    offsets = PartitionOffsets()
    offsets.started(0)
    offsets.finished(0)
    assert offsets.pending_commit() == 1
    offsets.committed(1)
    assert offsets.pending_commit() is None
    offsets.started(1)
    assert offsets.pending_commit() is None
    offsets.finished(1)
    assert offsets.pending_commit() == 2


def test_offsets_must_increase() -> None:
    offsets = PartitionOffsets()
    offsets.started(4)
    with pytest.raises(ValueError, match="must increase"):
        offsets.started(4)


def test_finishing_what_was_not_started_is_an_error() -> None:
    offsets = PartitionOffsets()
    offsets.started(1)
    offsets.started(3)
    with pytest.raises(ValueError, match="not in flight"):
        offsets.finished(2)
    offsets.finished(3)
    with pytest.raises(ValueError, match="not in flight"):
        offsets.finished(3)


@st.composite
def started_then_finish_order(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    """Increasing offsets with gaps, and a random order in which they finish."""
    first = draw(st.integers(min_value=0, max_value=1_000))
    steps = draw(st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=60))
    offsets = [first]
    for step in steps:
        offsets.append(offsets[-1] + step)
    return offsets, draw(st.permutations(offsets))


@given(started_then_finish_order())
def test_random_completion_never_commits_past_an_unfinished_offset(
    case: tuple[list[int], list[int]],
) -> None:
    started, finish_order = case
    offsets = PartitionOffsets()
    for offset in started:
        offsets.started(offset)
    finished: set[int] = set()
    previous = offsets.committable()
    for offset in finish_order:
        offsets.finished(offset)
        finished.add(offset)
        commit = offsets.committable()
        assert commit is not None
        # Everything below the commit has finished; the commit never moves backwards.
        assert all(o in finished for o in started if o < commit)
        assert previous is None or commit >= previous
        # And it is as far as it may go: the commit point itself is unfinished (or the end).
        assert commit == started[-1] + 1 or commit not in finished
        previous = commit
    assert offsets.committable() == started[-1] + 1
    assert offsets.in_flight == 0


@given(started_then_finish_order(), st.data())
def test_interleaved_start_and_finish(
    case: tuple[list[int], list[int]], data: st.DataObject
) -> None:
    started, _ = case
    offsets = PartitionOffsets()
    in_flight: list[int] = []
    finished: set[int] = set()
    to_start = list(started)
    while to_start or in_flight:
        if to_start and (not in_flight or data.draw(st.booleans())):
            offset = to_start.pop(0)
            offsets.started(offset)
            in_flight.append(offset)
        else:
            offset = in_flight.pop(data.draw(st.integers(0, len(in_flight) - 1)))
            offsets.finished(offset)
            finished.add(offset)
        commit = offsets.committable()
        assert commit is not None
        assert all(o in finished for o in started if o < commit)
        assert all(o >= commit for o in in_flight)
    assert offsets.committable() == started[-1] + 1
