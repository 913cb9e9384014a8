"""pack_receptions: every reception lands whole in exactly one atomic write."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from relaystream.ingest.reception_packing import pack_receptions

LIMIT = 1000


@dataclass(frozen=True)
class FakeReception:
    name: int
    size: int
    record_count: int


receptions = st.lists(st.tuples(st.integers(1, 3 * LIMIT), st.integers(1, 5)), max_size=40).map(
    lambda specs: [FakeReception(i, size, count) for i, (size, count) in enumerate(specs)]
)


@given(receptions)
def test_each_reception_is_written_once_and_in_order(items: list[FakeReception]) -> None:
    packing = pack_receptions(items, LIMIT)
    batched = [reception for batch in packing.batches for reception in batch]
    assert sorted(r.name for r in batched + packing.transactional) == [r.name for r in items]
    assert [r.name for r in batched] == sorted(r.name for r in batched)
    assert all(batch for batch in packing.batches)


@given(receptions)
def test_a_batch_stays_under_the_limit_unless_it_holds_one_lone_record(
    items: list[FakeReception],
) -> None:
    packing = pack_receptions(items, LIMIT)
    for batch in packing.batches:
        if sum(r.size for r in batch) > LIMIT:
            assert len(batch) == 1 and batch[0].record_count == 1
    # Only what cannot share a batch takes a transaction.
    assert all(r.size > LIMIT and r.record_count > 1 for r in packing.transactional)


def test_receptions_share_a_batch_until_it_is_full() -> None:
    small = [FakeReception(i, 400, 2) for i in range(5)]
    packing = pack_receptions(small, LIMIT)
    assert [[r.name for r in batch] for batch in packing.batches] == [[0, 1], [2, 3], [4]]
    assert packing.transactional == []


def test_a_big_reception_with_several_records_takes_a_transaction() -> None:
    big_fanout = FakeReception(1, 5000, 3)
    big_single = FakeReception(2, 5000, 1)
    packing = pack_receptions([FakeReception(0, 10, 1), big_fanout, big_single], LIMIT)
    assert packing.transactional == [big_fanout]
    assert [[r.name for r in batch] for batch in packing.batches] == [[0], [2]]
