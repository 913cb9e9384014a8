"""`relaystream run SERVICE`: run one service in this process (one Kubernetes Deployment each),
through the one service runtime (core/runtime/service.py)."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from ..core.runtime.service import ServiceSpec, run
from ..core.runtime.settings import SettingsError, load_settings, render_settings_table

# service name -> its module; each declares `SERVICE: ServiceSpec` and the runtime runs it.
SERVICES: dict[str, str] = {
    "ingest": "relaystream.ingest.service",
    "routing": "relaystream.routing.service",
    "scheduling": "relaystream.scheduling.service",
    "delivery": "relaystream.delivery.service",
}


def register(subparsers: Any) -> None:
    run_parser = subparsers.add_parser(
        "run", help="run one service (ingest, routing, scheduling, delivery)"
    )
    run_parser.add_argument("service", choices=sorted(SERVICES))
    run_parser.add_argument(
        "--config", help="settings file (YAML or TOML); default $RELAYSTREAM_CONFIG"
    )
    run_parser.set_defaults(handler=run_command)

    settings = subparsers.add_parser("settings", help="list every setting and its variable")
    settings.add_argument("--check", metavar="FILE", help="validate a settings file and exit")
    settings.set_defaults(handler=settings_command)


def service_spec(name: str) -> ServiceSpec:
    """The declaration of service `name`; imported only when that service is run."""
    spec: ServiceSpec = importlib.import_module(SERVICES[name]).SERVICE
    return spec


def run_command(args: argparse.Namespace) -> int:
    return run(service_spec(args.service), args.config)


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
