"""The `relaystream` command: a thin shell over the core and the services.

Each command group lives in its own module with a `register(subparsers)` function that adds
its sub-commands; a sub-command's handler takes the parsed arguments and returns an exit code.
Other installed distributions add command groups through the `relaystream.commands` entry-point
group (the devkit's `dev`, `kafka`, `bench`, `chaos`, installed from a checkout and never in
the image): the product names none of them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from types import ModuleType

# Modules under relaystream.cli, each with `register(subparsers)`. Order is the help order.
COMMAND_MODULES: tuple[str, ...] = (
    "run",
    "logs",
    "log_hooks",
    "topics",
    "queue_name",
    "retry_schedule",
    "resolve",
    "route",
    "audit",
    "queue_config",
    "admin",
    "admin_client",
    "dead_letters",
    "queues",
    "publish",
    "top",
)
# Each entry point names a module with `register(subparsers)`; its commands follow the product's.
COMMAND_ENTRY_POINTS = "relaystream.commands"

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
    for entry_point in entry_points(group=COMMAND_ENTRY_POINTS):
        where = f"{entry_point.value} (from {COMMAND_ENTRY_POINTS})"
        try:
            added: ModuleType = entry_point.load()
            added.register(subparsers)
        except (ImportError, AttributeError, argparse.ArgumentError) as error:
            # A broken add-on must not take `relaystream run` down with it: say so, go on.
            print(f"relaystream: commands {where} not loaded: {error}", file=sys.stderr)
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
