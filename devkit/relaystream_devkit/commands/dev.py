"""`relaystream dev`: Kafka, the topics, the four services and a sample sink, on loopback."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..broker import BrokerError, default_state_dir
from ..dev import DevPorts, run_dev


def register(subparsers: Any) -> None:
    dev = subparsers.add_parser(
        "dev", help="run the whole system locally (broker included) until Ctrl-C"
    )
    dev.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where the broker data, logs and sink mail go (default ./.relaystream)",
    )
    dev.add_argument(
        "--keep-broker", action="store_true", help="leave the Kafka broker running on exit"
    )
    dev.set_defaults(handler=dev_command)


def dev_command(args: argparse.Namespace) -> int:
    state_dir = args.state_dir or default_state_dir()
    try:
        return run_dev(state_dir, DevPorts(), keep_broker=args.keep_broker)
    except BrokerError as error:
        print(f"relaystream dev: {error}")
        return 1
