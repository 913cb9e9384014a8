"""Which partitions a rebalance keeps, drops and builds (scheduling/rebalance.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from relaystream.scheduling.rebalance import plan_assignment

partitions = st.sets(st.integers(0, 11))


@given(held=partitions, assigned=partitions)
def test_consecutive_assignment_builds_only_the_new_and_drops_only_the_revoked(
    held: set[int], assigned: set[int]
) -> None:
    plan = plan_assignment(held, assigned, consecutive=True)
    assert plan.keep == held & assigned
    assert plan.drop == held - assigned
    assert plan.build == assigned - held
    assert plan.keep | plan.build == assigned


@given(held=partitions, assigned=partitions)
def test_after_a_generation_gap_everything_is_built_again(
    held: set[int], assigned: set[int]
) -> None:
    plan = plan_assignment(held, assigned, consecutive=False)
    assert plan.keep == frozenset()
    assert plan.drop == held
    assert plan.build == assigned
