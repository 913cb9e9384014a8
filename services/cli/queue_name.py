"""`relaystream queue-name NAME`: the components of a scheduled queue name."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..core.domain.queue_name import QueueName, is_null_queue
from ..core.domain.routing_target import RoutingTarget, RoutingTargetError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "queue-name",
        help="split a scheduled queue name into campaign, tenant, domain and routing domain",
        description="Parses NAME as KumoMTA does (first '@', first ':', first '!') and shows "
        "its parts and the routing target that delivery would use.",
    )
    parser.add_argument("name", metavar="NAME")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=run)


def describe(name: str) -> dict[str, Any]:
    parsed = QueueName.parse(name)
    described: dict[str, Any] = {
        "name": name,
        "campaign": parsed.campaign,
        "tenant": parsed.tenant,
        "domain": parsed.domain,
        "routing_domain": parsed.routing_domain,
        "null_queue": is_null_queue(name),
    }
    try:
        target = RoutingTarget.classify(parsed.effective_domain)
    except RoutingTargetError as err:
        described["target"] = {"error": str(err)}
    else:
        described["target"] = {
            "kind": target.kind.value,
            "host": target.host,
            "port": target.port,
        }
    return described


def run(args: argparse.Namespace) -> int:
    described = describe(args.name)
    if args.json:
        print(json.dumps(described, indent=2))
        return 0
    for key in ("name", "campaign", "tenant", "domain", "routing_domain", "null_queue"):
        print(f"{key:15} {_show(described[key])}")
    target = described["target"]
    if "error" in target:
        print(f"{'target':15} error: {target['error']}")
    else:
        port = "" if target["port"] is None else f" port {target['port']}"
        print(f"{'target':15} {target['kind']} {target['host']}{port}")
    return 0


def _show(value: object) -> str:
    if value is None:
        return "(none)"
    if value == "":
        return '"" (empty)'
    return str(value)
