"""`relaystream resolve DOMAIN`: the MX plan delivery would follow for a routing target."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
from typing import Any

from ..core.dns.resolver import DEFAULT_TIMEOUT, MxResolver
from ..core.domain.mx_plan import MxLookupFailed, null_mx_response
from ..core.domain.routing_target import RoutingTargetError, split_colon_port


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "resolve",
        help="resolve a domain (or literal) to its MX plan: hosts, addresses, site name",
        description="DOMAIN is a routing target: a domain, optionally with ':port', or a "
        "literal like [10.0.0.1]. Exit code 0: a plan; 1: DNS failure (transient); "
        "2: unusable target; 3: null MX (mail to it bounces).",
    )
    parser.add_argument("domain", metavar="DOMAIN")
    parser.add_argument(
        "--nameserver",
        action="append",
        default=None,
        metavar="HOST:PORT",
        help="query this server (repeatable; default: the system resolver)",
    )
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=run)


def parse_nameserver(text: str) -> tuple[str, int]:
    if text.startswith("["):
        bracketed, _, port_text = text[1:].partition("]:")
        return bracketed, int(port_text) if port_text else 53
    host, port = split_colon_port(text)
    return host, 53 if port is None else port


async def resolve(domain: str, resolver: MxResolver) -> tuple[int, dict[str, Any]]:
    try:
        plan = await resolver.resolve_mx(domain)
    except RoutingTargetError as err:
        return 2, {"domain": domain, "status": "invalid", "error": str(err)}
    except MxLookupFailed as err:
        return 1, {
            "domain": domain,
            "status": "failed",
            "reason": err.reason,
            "site_name": err.site_name,
            "response": err.response.to_dict(),
        }
    if plan.is_null_mx:
        return 3, {
            "domain": domain,
            "status": "null_mx",
            "site_name": plan.site_name,
            "response": null_mx_response().to_dict(),
        }
    # Sorted addresses per host: the shuffle is for connecting, not for showing.
    candidates = await resolver.connection_candidates(plan, random.Random(0))
    by_host: dict[str, list[str]] = {}
    for candidate in candidates:
        by_host.setdefault(candidate.name, []).append(candidate.addr)
    return 0, {
        "domain": domain,
        "status": "ok",
        "site_name": plan.site_name,
        "is_mx": plan.is_mx,
        "is_domain_literal": plan.is_domain_literal,
        "preferences": [
            {
                "preference": preference,
                "hosts": [
                    {"host": host, "addresses": sorted(by_host.get(_bare(host, plan.port), []))}
                    for host in hosts
                ],
            }
            for preference, hosts in plan.by_preference
        ],
    }


def _bare(host: str, port: int | None) -> str:
    return host.rsplit(":", 1)[0] if port is not None else host


def run(args: argparse.Namespace) -> int:
    nameservers = None
    if args.nameserver:
        try:
            nameservers = [parse_nameserver(text) for text in args.nameserver]
        except ValueError:
            print(f"error: bad --nameserver {args.nameserver!r}: expected HOST:PORT")
            return 2
    resolver = MxResolver(nameservers, timeout=args.timeout)
    code, result = asyncio.run(resolve(args.domain, resolver))
    if args.json:
        print(json.dumps(result, indent=2))
        return code
    print(f"{args.domain}: {result['status']}")
    if "site_name" in result:
        print(f"  site: {result['site_name']!r}")
    if "response" in result:
        response = result["response"]
        enhanced = response["enhanced_code"]
        code_text = "" if enhanced is None else "{class}.{subject}.{detail} ".format(**enhanced)
        print(f"  response: {response['code']} {code_text}{response['content']}")
    if "error" in result:
        print(f"  error: {result['error']}")
    for level in result.get("preferences", []):
        for host in level["hosts"]:
            addresses = ", ".join(host["addresses"]) or "(no addresses)"
            print(f"  {level['preference']:>5} {host['host']}: {addresses}")
    return code
