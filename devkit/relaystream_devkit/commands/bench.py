"""`relaystream bench`: end-to-end throughput and latency of the pipeline, optionally next to a
local Postfix (relaystream_devkit/bench.py does the work)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from relaystream.core.runtime.settings import KAFKA_COMPRESSION_CODECS

from ..bench import GENERATORS, SINKS, BenchOptions, main
from ..bench_load import SCENARIOS
from ..broker import BrokerError, default_state_dir


def register(subparsers: Any) -> None:
    bench = subparsers.add_parser(
        "bench",
        help="send N messages through the pipeline (and Postfix) and report rates and latencies",
    )
    bench.add_argument(
        "--messages", type=int, default=BenchOptions.messages, help="messages per run"
    )
    bench.add_argument(
        "--concurrency",
        type=int,
        default=BenchOptions.concurrency,
        help="concurrent SMTP sessions",
    )
    bench.add_argument(
        "--scenario",
        action="append",
        choices=list(SCENARIOS),
        help="repeatable; default 1rcpt-1k",
    )
    bench.add_argument(
        "--rate",
        type=float,
        help="messages per second to send at (builtin generator), e.g. half the peak rate "
        "to measure latency there; default: as fast as the MTA answers",
    )
    bench.add_argument(
        "--repeats", type=int, default=BenchOptions.repeats, help="runs per scenario and system"
    )
    bench.add_argument(
        "--warmup",
        type=int,
        default=BenchOptions.warmup_messages,
        help="messages each system gets (unmeasured) before a scenario's runs",
    )
    bench.add_argument(
        "--compare", choices=["postfix"], help="run the same load through a local Postfix"
    )
    bench.add_argument(
        "--install-postfix",
        action="store_true",
        help="apt-get install postfix when it is missing (root only)",
    )
    bench.add_argument(
        "--generator", choices=GENERATORS, default="builtin", help="SMTP load generator"
    )
    bench.add_argument(
        "--sink",
        choices=SINKS,
        default="builtin",
        help="where both systems deliver: the builtin sink, or Postfix's smtp-sink "
        "(one-recipient scenarios)",
    )
    bench.add_argument(
        "--bootstrap",
        help="measure a running deployment on this broker instead of starting one "
        "(its policy must route every domain to [127.0.0.1]:--sink-port)",
    )
    bench.add_argument(
        "--ingest", default="127.0.0.1:2525", help="with --bootstrap: ingest's SMTP address"
    )
    bench.add_argument(
        "--topic-prefix", default="relaystream.", help="with --bootstrap: its topic prefix"
    )
    bench.add_argument("--sink-port", type=int, help="the sink's port (default: a free one)")
    bench.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="broker data, service logs, Postfix (default ./.relaystream/bench)",
    )
    bench.add_argument(
        "--compression",
        choices=KAFKA_COMPRESSION_CODECS,
        help="the services' kafka_compression for this run (default: the setting's default)",
    )
    bench.add_argument(
        "--json",
        action="store_true",
        help="end with one JSON summary line per scenario: median ratio, each system's "
        "median msg/s and CPU s per 1000 msgs, scenario, repeats, commit",
    )
    bench.add_argument(
        "--report-json", type=Path, metavar="FILE", help="also write the full report as JSON here"
    )
    bench.set_defaults(handler=bench_command)


def bench_command(args: argparse.Namespace) -> int:
    if args.rate is not None and (args.rate <= 0 or args.generator != "builtin"):
        print("relaystream bench: --rate needs a positive rate and the builtin generator")
        return 2
    if args.bootstrap and args.compression:
        print(
            "relaystream bench: --compression sets the services the bench starts, not --bootstrap"
        )
        return 2
    if args.bootstrap and args.sink_port is None:
        print("relaystream bench: --bootstrap needs --sink-port (where its policy routes to)")
        return 2
    options = BenchOptions(
        state_dir=(args.state_dir or default_state_dir() / "bench").resolve(),
        messages=args.messages,
        concurrency=args.concurrency,
        scenarios=tuple(args.scenario or ["1rcpt-1k"]),
        repeats=args.repeats,
        warmup_messages=args.warmup,
        compare_postfix=args.compare == "postfix",
        install_postfix=args.install_postfix,
        generator=args.generator,
        sink=args.sink,
        rate=args.rate,
        bootstrap=args.bootstrap,
        ingest=args.ingest,
        topic_prefix=args.topic_prefix,
        sink_port=args.sink_port,
        compression=args.compression,
    )
    try:
        return main(options, args.report_json, json_summary=args.json)
    except (BrokerError, RuntimeError, ValueError) as error:
        print(f"relaystream bench: {error}")
        return 1
