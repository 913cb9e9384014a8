"""Which receptions share a record batch: the packing behind ingest's atomic writes (acceptor.py).

Kafka appends a record batch as one unit, so receptions packed whole into a batch land together
or not at all. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


class Packable(Protocol):
    """What packing needs of a reception: its bytes in a batch and its number of records."""

    @property
    def size(self) -> int: ...

    @property
    def record_count(self) -> int: ...


_R = TypeVar("_R", bound=Packable)


@dataclass(frozen=True)
class Packing(Generic[_R]):
    """Receptions grouped for writing: each batch is one atomic record batch, each of
    `transactional` a Kafka transaction of its own."""

    batches: list[list[_R]]
    transactional: list[_R]


def pack_receptions(receptions: Sequence[_R], batch_bytes: int) -> Packing[_R]:
    """Packs receptions whole, in order, into batches of at most `batch_bytes`.

    A single reception over `batch_bytes` is a batch of its own when it has one record (one
    record is atomic anyway) and transactional when it has several.
    """
    batches: list[list[_R]] = []
    transactional: list[_R] = []
    current: list[_R] = []
    current_bytes = 0
    for reception in receptions:
        if reception.size > batch_bytes and reception.record_count > 1:
            transactional.append(reception)
            continue
        if current and current_bytes + reception.size > batch_bytes:
            batches.append(current)
            current, current_bytes = [], 0
        current.append(reception)
        current_bytes += reception.size
    if current:
        batches.append(current)
    return Packing(batches, transactional)
