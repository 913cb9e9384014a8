"""`relaystream top`: a live terminal view of queues, rates and consumer lag.

It scrapes the services' Prometheus endpoints (`--metrics URL`, repeatable; default the
compose and `relaystream dev` ports 8080-8083), sums the samples over them, and redraws every
`--interval` seconds: messages received, delivered, deferred and failed per second, the
scheduled and in-flight counts, open connections, the largest scheduled queues with their
change per second, and the consumer groups' lag. `--once` prints one frame (two scrapes an
interval apart, for the rates) and exits.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from .common import table

DEFAULT_ENDPOINTS = tuple(f"http://127.0.0.1:{port}/metrics" for port in (8080, 8081, 8082, 8083))
Labels = frozenset[tuple[str, str]]


@dataclass(frozen=True)
class Scrape:
    """Samples summed over the endpoints that answered, and when they were taken."""

    at: float
    samples: dict[tuple[str, Labels], float]
    up: int
    asked: int

    def value(self, name: str, **labels: str) -> float:
        """The sum over every series of `name` whose labels include `labels`."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= ls)

    def by_label(self, name: str, *label_names: str) -> dict[tuple[str, ...], float]:
        grouped: dict[tuple[str, ...], float] = {}
        for (n, labels), value in self.samples.items():
            if n != name:
                continue
            as_dict = dict(labels)
            key = tuple(as_dict.get(label, "") for label in label_names)
            grouped[key] = grouped.get(key, 0.0) + value
        return grouped


def parse_samples(texts: Iterable[str]) -> dict[tuple[str, Labels], float]:
    samples: dict[tuple[str, Labels], float] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = (sample.name, frozenset(sample.labels.items()))
                samples[key] = samples.get(key, 0.0) + sample.value
    return samples


def scrape(endpoints: tuple[str, ...], timeout: float = 5.0) -> Scrape:
    texts = []
    for url in endpoints:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                texts.append(response.read().decode())
        except (urllib.error.URLError, OSError):
            continue
    return Scrape(time.monotonic(), parse_samples(texts), len(texts), len(endpoints))


def _per_second(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    elapsed = after.at - before.at
    if elapsed <= 0:
        return 0.0
    # A counter that went down was reset (a restart): count from zero.
    now, then = after.value(name, **labels), before.value(name, **labels)
    return (now - then if now >= then else now) / elapsed


def render(before: Scrape, after: Scrape, rows: int) -> list[str]:
    """One frame of the view from two scrapes."""
    client = {"service": "smtp_client"}
    rate = {
        "received": _per_second(before, after, "total_messages_received"),
        "delivered": _per_second(before, after, "total_messages_delivered", **client),
        "deferred": _per_second(before, after, "total_messages_transfail", **client),
        "failed": _per_second(before, after, "total_messages_fail", **client),
    }
    stamp = datetime.now(UTC).strftime("%H:%M:%S")
    queues = after.by_label("scheduled_count", "queue")
    connections = after.by_label("connection_count", "service")
    lines = [
        f"relaystream top  {stamp} UTC  endpoints up {after.up}/{after.asked}",
        "  ".join(f"{name} {value:.1f}/s" for name, value in rate.items()),
        f"scheduled {after.value('scheduled_count_total'):.0f} waiting in {len(queues)} queues, "
        f"{after.value('ready_count'):.0f} released to delivery, "
        f"{after.value('relaystream_scheduling_due_messages'):.0f} due",
        "connections: "
        + (", ".join(f"{s} {v:.0f}" for (s,), v in sorted(connections.items())) or "none"),
        "",
    ]
    elapsed = max(after.at - before.at, 1e-9)
    earlier = before.by_label("scheduled_count", "queue")
    largest = sorted(queues.items(), key=lambda item: (-item[1], item[0]))[:rows]
    if largest:
        queue_rows: list[tuple[str, ...]] = [("QUEUE", "WAITING", "CHANGE/S")]
        for (queue,), waiting in largest:
            change = (waiting - earlier.get((queue,), 0.0)) / elapsed
            queue_rows.append((queue, f"{waiting:.0f}", f"{change:+.1f}"))
        lines += [*table(queue_rows).splitlines(), ""]
    lag = after.by_label("relaystream_kafka_consumer_lag_records", "group", "topic")
    if lag:
        lag_rows: list[tuple[str, ...]] = [("GROUP", "TOPIC", "LAG")]
        for (group, topic), records in sorted(lag.items(), key=lambda item: -item[1])[:rows]:
            lag_rows.append((group, topic, f"{records:.0f}"))
        lines += table(lag_rows).splitlines()
    return lines


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "top",
        help="live view of queues, rates and consumer lag from the services' metrics",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--metrics",
        action="append",
        metavar="URL",
        help="a service's /metrics URL (repeatable; default ports 8080-8083)",
    )
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between frames")
    parser.add_argument("--rows", type=int, default=15, help="queues and groups shown")
    parser.add_argument("--once", action="store_true", help="print one frame and exit")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    endpoints = tuple(args.metrics or DEFAULT_ENDPOINTS)
    before = scrape(endpoints)
    try:
        while True:
            time.sleep(args.interval)
            after = scrape(endpoints)
            frame = render(before, after, args.rows)
            if args.once:
                print("\n".join(frame))
                return 0 if after.up else 1
            # Home and clear, then the frame: a redraw without scrolling.
            sys.stdout.write("\x1b[H\x1b[2J" + "\n".join(frame) + "\n")
            sys.stdout.flush()
            before = after
    except KeyboardInterrupt:
        return 0
