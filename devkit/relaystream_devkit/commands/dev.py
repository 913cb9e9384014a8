"""`relaystream dev`: Kafka, the topics, the four services and a sample sink, on loopback."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from relaystream.core.policy import PolicyLoadError, policy_from_file

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
    dev.add_argument(
        "--policy",
        type=Path,
        default=None,
        metavar="FILE",
        help="route with this policy (a KumoMTA init.lua, with its data files beside it, or a "
        "declarative .yaml) instead of the sample one, which smarthosts all mail to the sink",
    )
    dev.set_defaults(handler=dev_command)


def policy_problem(path: Path) -> str | None:
    """Why the services could not load the policy at `path` (None: it loads). Checked before
    anything starts, so a bad policy is one clear line, not four services restarting."""
    try:
        policy_from_file(path)
    except PolicyLoadError as error:
        return str(error)
    return None


def dev_command(args: argparse.Namespace) -> int:
    if args.policy is not None:
        problem = policy_problem(args.policy)
        if problem is not None:
            print(f"relaystream dev: the policy does not load: {problem}", file=sys.stderr)
            return 2
    state_dir = args.state_dir or default_state_dir()
    try:
        return run_dev(state_dir, DevPorts(), keep_broker=args.keep_broker, policy_path=args.policy)
    except BrokerError as error:
        print(f"relaystream dev: {error}")
        return 1
