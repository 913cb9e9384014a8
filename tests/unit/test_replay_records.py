"""The replay's reading of a fetched record set (`_records_of`): the range, whole batches a
filter rules out (counted, not made into records) and CRC checks, on record batches built the
way a producer builds them."""

from __future__ import annotations

import pytest
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from hypothesis import given
from hypothesis import strategies as st

from relaystream.core.kafka.replay import _records_of


def record_batch(base_offset: int, count: int) -> bytes:
    """`count` records from `base_offset`, each value naming its offset."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for delta in range(count):
        offset = base_offset + delta
        builder.append(delta, timestamp=1000 + offset, key=b"k", value=b"v%d;" % offset, headers=[])
    built = bytearray(builder.build())
    built[0:8] = base_offset.to_bytes(8, "big")  # the broker assigns offsets on append
    return bytes(built)


@st.composite
def record_sets(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    """Consecutive batches (their sizes) as one fetched record set."""
    sizes = draw(st.lists(st.integers(1, 6), min_size=1, max_size=6))
    data, offset = b"", 0
    for size in sizes:
        data += record_batch(offset, size)
        offset += size
    return data, sizes


@given(
    fetched=record_sets(),
    cut=st.tuples(st.integers(0, 40), st.integers(0, 40)),
    ruled_out=st.sets(st.integers(0, 5)),
)
def test_batches_ruled_out_are_counted_and_nothing_wanted_is_lost(
    fetched: tuple[bytes, list[int]], cut: tuple[int, int], ruled_out: set[int]
) -> None:
    data, sizes = fetched
    position, end = min(cut), max(cut)
    batch_of = [n for n, size in enumerate(sizes) for _ in range(size)]  # offset -> batch
    seen: list[int] = []

    def test(raw: bytes, start: int, stop: int) -> bool:
        # Which batch these bytes are: the value of its first record names the offset.
        first = int(raw[start:stop].split(b"v", 1)[1].split(b";", 1)[0])
        seen.append(batch_of[first])
        return batch_of[first] not in ruled_out

    everything, next_position, read_all = _records_of(data, position, end, None)
    some, next_position_filtered, read = _records_of(data, position, end, None, batch_test=test)
    in_range = [r.offset for r in everything]
    assert in_range == list(range(position, min(end, len(batch_of))))
    kept = [r.offset for r in some]
    # Records of batches the test accepts all come back; the others may (a batch the range
    # cuts is read record by record), and the count and next position are the same.
    assert set(kept) <= set(in_range)
    assert {o for o in in_range if batch_of[o] not in ruled_out} <= set(kept)
    assert (read, next_position_filtered) == (read_all, next_position)
    # Only batches wholly inside the range are offered to the test.
    for batch in seen:
        first = batch_of.index(batch)
        assert position <= first and first + sizes[batch] <= end


def test_a_corrupt_batch_is_refused_when_crcs_are_checked() -> None:
    data = bytearray(record_batch(0, 3) + record_batch(3, 2))
    data[data.index(b"v4;") + 1] = ord("X")  # a byte of the second batch's records
    records, _, _ = _records_of(bytes(data), 0, None, None)
    assert [r.offset for r in records] == [0, 1, 2, 3, 4]  # not checked: read as it is
    with pytest.raises(CorruptRecordException):
        _records_of(bytes(data), 0, None, None, check_crcs=True)
    intact, _, read = _records_of(record_batch(0, 3), 0, None, None, check_crcs=True)
    assert (len(intact), read) == (3, 3)
