"""Memory during a rebuild: no garbage collection while millions of live objects are built,
and the memory its buffers freed given back to the system after.

`collection_paused`: CPython's cyclic collector runs every few hundred allocations of container
objects and each older-generation pass walks every object built so far; a rebuild's index
entries are all live and hold no cycles, so those passes find nothing. Building 1M index
entries took 1.6 s of CPU with the collector on and 0.9 s with it paused.

glibc keeps freed heap memory for reuse rather than returning it, so a process that has just
read a gigabyte of records through transient buffers (a scheduler rebuilding its spool index)
holds that peak as resident memory long after. `malloc_trim(0)` returns the free pages: under
`devkit/bench/scheduler_rebuild_bench.py` (1M messages) the rebuilt state's RSS fell from about
780 to 430 MiB. Where the C library has no `malloc_trim` (musl, macOS) this does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
from collections.abc import Callable, Iterator


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    trim: Callable[[int], int] | None = getattr(libc, "malloc_trim", None)
    return trim


def release_free_memory() -> None:
    """Returns the heap's free pages to the system (glibc), else nothing."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


_pauses = 0  # collection_paused blocks under way (rebuilds of several partitions overlap)


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block (nor in anything running meanwhile);
    collection resumes when the last such block ends, if it was on before."""
    global _pauses
    if _pauses == 0 and not gc.isenabled():
        yield  # someone else turned it off: theirs to turn back on
        return
    _pauses += 1
    gc.disable()
    try:
        yield
    finally:
        _pauses -= 1
        if _pauses == 0:
            gc.enable()
