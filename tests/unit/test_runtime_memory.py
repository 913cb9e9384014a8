"""Pausing the cyclic garbage collector during rebuilds, and handing freed memory back."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from relaystream.core.runtime.memory import collection_paused, release_free_memory


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    was_enabled = gc.isenabled()
    yield
    if was_enabled:
        gc.enable()
    else:
        gc.disable()


def test_collection_resumes_when_the_last_of_overlapping_pauses_ends() -> None:
    gc.enable()
    first, second = collection_paused(), collection_paused()
    first.__enter__()
    second.__enter__()
    assert not gc.isenabled()
    first.__exit__(None, None, None)  # rebuilds of two partitions end in any order
    assert not gc.isenabled()
    second.__exit__(None, None, None)
    assert gc.isenabled()


def test_collection_resumes_after_an_error() -> None:
    gc.enable()
    with pytest.raises(RuntimeError), collection_paused():
        raise RuntimeError("the rebuild failed")
    assert gc.isenabled()


def test_a_collector_turned_off_elsewhere_stays_off() -> None:
    gc.disable()
    with collection_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_releasing_free_memory_keeps_live_objects() -> None:
    kept = [bytes([n % 256]) * 4096 for n in range(256)]
    del kept[::2]
    release_free_memory()
    assert [block[0] for block in kept] == [n % 256 for n in range(1, 256, 2)]
