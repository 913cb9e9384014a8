"""Encode and decode throughput of the event codec, per event type, for realistic records.

    .venv/bin/python devkit/bench/codec_bench.py [--content-size 10000] [--seconds 1.0]

Message-carrying events hold a `content_size`-byte message (10 KB by default).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

from relaystream.core.events import decode, encode
from relaystream.core.events.examples import example_records


def rate(operation: Callable[[], object], seconds: float) -> float:
    """Operations per second, timed in batches until `seconds` have passed."""
    operation()  # warm the caches (schema loading) outside the timing
    count, batch = 0, 100
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for _ in range(batch):
            operation()
        count += batch
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--content-size", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    print(f"{'event':<20} {'bytes':>7} {'encodes/s':>11} {'decodes/s':>11}")
    for name, record in example_records(args.content_size).items():
        data = encode(name, record)
        encodes = rate(partial(encode, name, record), args.seconds)
        decodes = rate(partial(decode, data), args.seconds)
        print(f"{name:<20} {len(data):>7} {encodes:>11,.0f} {decodes:>11,.0f}")


if __name__ == "__main__":
    main()
