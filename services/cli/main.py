"""The `relaystream` command: a thin shell over the core, the services and the devkit.

Each command group lives in its own module with a `register(subparsers)` function that adds
its sub-commands; a sub-command's handler takes the parsed arguments and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

# Modules under relaystream.cli, each with `register(subparsers)`. Order is the help order.
COMMAND_MODULES: tuple[str, ...] = (
    "dev",
    "run",
    "logs",
    "kafka",
    "topics",
    "queue_name",
    "retry_schedule",
    "resolve",
    "route",
    "audit",
    "queue_config",
    "admin",
    "dead_letters",
    "queues",
    "publish",
    "bench",
    "chaos",
)

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relaystream",
        description="An event-sourced mail transfer agent on Apache Kafka.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"{__package__}.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        code = handler(args)
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
