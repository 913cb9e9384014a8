"""`relaystream run SERVICE`: run one service in this process (one Kubernetes Deployment each)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from ..core.runtime import event_loop
from ..core.runtime.settings import SettingsError, load_settings, render_settings_table

# service name -> (module, entry coroutine); each entry is `async def run_<name>(settings)`.
SERVICES: dict[str, tuple[str, str]] = {
    "ingest": ("relaystream.ingest.service", "run_ingest"),
    "routing": ("relaystream.routing.service", "run_routing"),
    "scheduling": ("relaystream.scheduling.service", "run_scheduling"),
    "delivery": ("relaystream.delivery.service", "run_delivery"),
}


def register(subparsers: Any) -> None:
    run = subparsers.add_parser(
        "run", help="run one service (ingest, routing, scheduling, delivery)"
    )
    run.add_argument("service", choices=sorted(SERVICES))
    run.add_argument("--config", help="settings file (YAML or TOML); default $RELAYSTREAM_CONFIG")
    run.set_defaults(handler=run_command)

    settings = subparsers.add_parser("settings", help="list every setting and its variable")
    settings.add_argument("--check", metavar="FILE", help="validate a settings file and exit")
    settings.set_defaults(handler=settings_command)


def service_entry(name: str) -> Callable[[Any], Coroutine[Any, Any, None]]:
    module_name, function = SERVICES[name]
    entry: Callable[[Any], Coroutine[Any, Any, None]] = getattr(
        importlib.import_module(module_name), function
    )
    return entry


def run_command(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
    except SettingsError as error:
        print(f"relaystream run {args.service}: {error}", file=sys.stderr)
        return 2
    entry = service_entry(args.service)
    try:
        event_loop.run(entry(settings))
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1
    return 0


def settings_command(args: argparse.Namespace) -> int:
    if args.check:
        try:
            load_settings(args.check)
        except SettingsError as error:
            print(error, file=sys.stderr)
            return 2
        print(f"{args.check}: valid")
        return 0
    print(render_settings_table())
    return 0
