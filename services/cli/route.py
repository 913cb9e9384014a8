"""`relaystream route`: what a policy does with one message, without Kafka.

Runs the policy's reception handler on a whole message (--data FILE, or a minimal RFC 5322
message built from the envelope and the --header options), then shows the
meta after it, the scheduled queue name with its parts, the queue config that the
policy's get_queue_config gives that queue (defaults filled in), and its egress: the pool
the queue config names (get_egress_pool), the source its weighted round-robin picks first
(get_egress_source), the destination site (from MX, unless --site-name gives it) and the
egress path config the policy's get_egress_path_config gives for that source and site.
For ESMTP it first shows the listener domains get_listener_domain gives the sender's and the
recipient's domain, and whether a client outside the relay networks may relay (--client).
Exit status: 0 accepted, 1 rejected or failed by the policy, 2 bad input or a policy that
does not load.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from email.utils import formatdate
from pathlib import Path
from typing import Any, cast

from ..core.dns.resolver import MxResolver
from ..core.domain.egress_source import RoundRobinState, next_source
from ..core.domain.envelope import EnvelopeAddress, EnvelopeAddressError
from ..core.domain.mx_plan import MxLookupFailed, plan_for_mx_list
from ..core.domain.queue_config import QueueConfig, QueueConfigError
from ..core.domain.queue_name import QueueName
from ..core.domain.routing_target import RoutingTarget, RoutingTargetError
from ..core.policy import (
    JsonValue,
    Policy,
    PolicyLoadError,
    PolicyMessage,
    PolicyRuntimeError,
    ReceptionProtocol,
    policy_from_file,
)
from ..core.policy.host import policy_log
from ..core.policy.message_state import split_message
from ..core.policy.routing_rule import RefusedMessage, route_message
from .route_listener import DEFAULT_LISTENER, listener_domain_report, print_listener_domain

MESSAGE_ID = "route-cli"
# How long the MX lookup that names the destination site may take.
MX_LOOKUP_SECONDS = 5.0


class RouteInputError(ValueError):
    """An option value that does not make a message."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "route",
        help="run a routing policy on one message and show its queue and queue config",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument(
        "--policy",
        type=Path,
        required=True,
        metavar="FILE",
        help="a Lua (.lua) or declarative (.yaml/.yml) policy",
    )
    parser.add_argument(
        "--sender",
        required=True,
        metavar="ADDRESS",
        help="envelope sender ('' for the null sender)",
    )
    parser.add_argument("--recipient", required=True, metavar="ADDRESS")
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="a message header (repeatable); From, To, Date, Message-ID and Subject are "
        "filled in from the envelope when not given",
    )
    parser.add_argument(
        "--data",
        type=Path,
        metavar="FILE",
        help="the whole message (RFC 5322 header block, blank line, body) instead of --header",
    )
    parser.add_argument(
        "--meta",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="input meta (repeatable); VALUE is JSON when it parses, else text",
    )
    parser.add_argument(
        "--protocol",
        choices=("ESMTP", "HTTP", "Kafka"),
        default="ESMTP",
        help="reception protocol: picks the handler (default ESMTP)",
    )
    parser.add_argument(
        "--site-name",
        metavar="SITE",
        help="the destination site for get_egress_path_config (default: from the MX lookup)",
    )
    parser.add_argument(
        "--listener",
        default=DEFAULT_LISTENER,
        metavar="IP:PORT",
        help=f"the SMTP listener get_listener_domain is asked about (default {DEFAULT_LISTENER})",
    )
    parser.add_argument(
        "--client",
        metavar="IP",
        help="the SMTP client's address, for relay_from (default: any client)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=run)


def parse_meta_options(items: list[str]) -> dict[str, JsonValue]:
    meta: dict[str, JsonValue] = {}
    for item in items:
        key, equals, text = item.partition("=")
        if not equals or not key:
            raise RouteInputError(f"--meta {item!r}: expected KEY=VALUE")
        try:
            meta[key] = json.loads(text)
        except json.JSONDecodeError:
            meta[key] = text
    return meta


def header_block(items: list[str]) -> str:
    for item in items:
        name, colon, _ = item.partition(":")
        if not colon or not name.strip() or "\n" in item or "\r" in item:
            raise RouteInputError(f"--header {item!r}: expected 'Name: value' on one line")
    return "".join(f"{item}\r\n" for item in items)


def minimal_message(sender: str, recipient: str, headers: str) -> bytes:
    """`headers` (from --header) completed into a whole message: the fields a policy reads
    most (From, To, Date, Message-ID, Subject; From only for a non-null sender) are taken
    from the envelope where not given, so msg:from_header() and the methods that change the
    message work as on received mail."""
    given = {line.partition(":")[0].strip().lower() for line in headers.splitlines()}
    defaults = {
        "From": sender,
        "To": recipient,
        "Date": formatdate(usegmt=True),
        "Message-ID": f"<{MESSAGE_ID}@relaystream.invalid>",
        "Subject": "relaystream route",
    }
    added = "".join(
        f"{name}: {value}\r\n"
        for name, value in defaults.items()
        if value and name.lower() not in given
    )
    return f"{headers}{added}\r\nA message made by relaystream route.\r\n".encode()


def message_from_file(path: Path) -> tuple[str, bytes]:
    """(header block, whole message) of the --data file."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise RouteInputError(f"--data {path}: {err.strerror}") from err
    headers = header_section(data)
    if ":" not in headers:
        raise RouteInputError(f"--data {path}: no header fields (expected an RFC 5322 message)")
    return headers, data


def header_section(data: bytes) -> str:
    """The header fields of a whole message, as text (the policy's PolicyMessage.headers)."""
    fields, _, _ = split_message(data)
    return b"".join(field.raw for field in fields).decode("utf-8", errors="replace")


def route(
    policy: Policy,
    protocol: ReceptionProtocol,
    message: PolicyMessage,
    site_name: str | None = None,
    listener: str = DEFAULT_LISTENER,
    client: str | None = None,
) -> dict[str, Any]:
    """The report `route` prints, as data. `site_name`: the destination site, instead of
    the one the MX lookup gives; `listener` and `client`: the SMTP listener and client
    get_listener_domain is asked for (ESMTP only)."""
    report: dict[str, Any] = {
        "policy": {"name": policy.name, "content_hash": policy.content_hash},
        "protocol": protocol,
    }
    if protocol == "ESMTP":
        section, error = listener_domain_report(
            policy, message.sender, message.recipient, listener, client
        )
        report["listener_domain"] = section
        if error is not None:
            # Ingest answers at RCPT TO: the message never reaches the reception handler.
            if error.rejection is not None:
                report["outcome"] = "rejected"
                report["response"] = error.rejection.response
            else:
                report["outcome"] = "failed"
                report["error"] = f"get_listener_domain: {error}"
            return report
    routed = route_message(policy, protocol, message)
    if isinstance(routed, RefusedMessage):
        _report_refusal(report, routed)
        return report
    report["outcome"] = "accepted"
    report["meta"] = routed.meta_after
    name = routed.queue
    parsed = QueueName.parse(name)
    report["queue"] = {
        "name": name,
        "campaign": parsed.campaign,
        "tenant": parsed.tenant,
        "domain": parsed.domain,
        "routing_domain": parsed.routing_domain,
        "null_queue": routed.discarded,
    }
    try:
        fields = policy.get_queue_config(
            parsed.domain, parsed.tenant, parsed.campaign, parsed.routing_domain
        )
        config = QueueConfig.from_mapping(fields or {})
    except (PolicyRuntimeError, QueueConfigError) as err:
        report["outcome"] = "failed"
        report["error"] = f"get_queue_config: {err}"
        return report
    report["queue_config_source"] = "defaults" if fields is None else "policy"
    report["queue_config"] = config.to_mapping()
    if not routed.discarded:
        target = parsed.routing_domain or parsed.domain
        _report_egress(report, policy, config, target, site_name)
    return report


def _report_egress(
    report: dict[str, Any],
    policy: Policy,
    config: QueueConfig,
    routing_target: str,
    site_name: str | None,
) -> None:
    """The egress the policy gives the queue, as KumoMTA resolves it: pool, source, site,
    then the path config for that source and site."""
    egress: dict[str, Any] = {}
    report["egress"] = egress
    try:
        pool = policy.get_egress_pool(config.egress_pool)
        egress["pool"] = pool.to_mapping()
        picked = next_source(pool.entries, RoundRobinState())
        if picked is None:
            report["outcome"] = "failed"
            report["error"] = f"egress pool {pool.name!r} has no source with a weight above 0"
            return
        source = policy.get_egress_source(picked[0])
        egress["source"] = source.to_mapping()
        if site_name is None:
            site_name, note = destination_site(routing_target, config)
            if note:
                egress["site_note"] = note
        egress["site_name"] = site_name
        path = policy.get_egress_path_config(routing_target, source.name, site_name)
    except PolicyRuntimeError as err:
        report["outcome"] = "failed"
        report["error"] = str(err)
        return
    egress["path_config"] = path.to_mapping(redact=True)


def destination_site(routing_target: str, config: QueueConfig) -> tuple[str, str]:
    """The site name KumoMTA would give the queue's destination: its mx_list, its literal
    address, or its MX hosts. When the MX lookup fails, the routing target itself, with a
    note saying why."""
    if config.mx_list is not None:
        return plan_for_mx_list(routing_target, config).site_name, ""
    try:
        target = RoutingTarget.classify(routing_target)
        if target.is_literal:
            return target.literal_site_name, ""
        plan = asyncio.run(MxResolver(timeout=MX_LOOKUP_SECONDS).resolve_mx(routing_target))
    except (RoutingTargetError, MxLookupFailed) as err:
        return routing_target, f"MX lookup failed ({err}); the site is the routing target"
    if plan.is_null_mx:
        return routing_target, "null MX: no delivery; the site is the routing target"
    return plan.site_name, ""


def _report_refusal(report: dict[str, Any], refused: RefusedMessage) -> None:
    if refused.meta_error is not None:
        report["outcome"] = "failed"
        report["meta"] = refused.meta_after
        report["error"] = f"no queue name: {refused.meta_error}"
    elif refused.failure is not None:
        report["outcome"] = "failed"
        report["reason"] = refused.failure.reason
        report["error"] = refused.failure.message
        report["response"] = refused.rejection.response
    else:
        report["outcome"] = "rejected"
        report["response"] = refused.rejection.response


def run(args: argparse.Namespace) -> int:
    try:
        meta = parse_meta_options(args.meta)
        if args.data is not None and args.header:
            raise RouteInputError("--data and --header: give the headers in the --data file")
        EnvelopeAddress.parse(args.recipient)
        if args.sender:
            EnvelopeAddress.parse(args.sender)
        if args.client is not None:
            try:
                ipaddress.ip_address(args.client)
            except ValueError as err:
                raise RouteInputError(f"--client {args.client!r}: {err}") from err
        if args.data is not None:
            headers, data = message_from_file(args.data)
        else:
            data = minimal_message(args.sender, args.recipient, header_block(args.header))
            headers = header_section(data)
        with policy_log_on_stderr():
            policy = policy_from_file(args.policy)
    except (RouteInputError, EnvelopeAddressError, PolicyLoadError) as err:
        print(f"relaystream route: {err}", file=sys.stderr)
        return 2
    message = PolicyMessage(MESSAGE_ID, args.sender, args.recipient, meta, headers, data)
    with policy_log_on_stderr():
        report = route(
            policy,
            cast(ReceptionProtocol, args.protocol),
            message,
            args.site_name,
            args.listener,
            args.client,
        )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0 if report["outcome"] == "accepted" else 1


@contextmanager
def policy_log_on_stderr() -> Iterator[None]:
    """What the policy logs while it loads and runs (print, events relaystream does not run,
    configuration calls it ignores) goes to stderr, one line each, beside the report."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("relaystream route: %(levelname)s %(message)s"))
    previous_level = policy_log.level
    policy_log.addHandler(handler)
    policy_log.setLevel(logging.INFO)
    try:
        yield
    finally:
        policy_log.removeHandler(handler)
        policy_log.setLevel(previous_level)


def print_report(report: dict[str, Any]) -> None:
    policy = report["policy"]
    print(f"{'policy':16} {policy['name']} sha256:{policy['content_hash']}")
    print(f"{'protocol':16} {report['protocol']}")
    print(f"{'outcome':16} {report['outcome']}")
    if "response" in report:
        print(f"{'response':16} {report['response']}")
    if "error" in report:
        print(f"{'error':16} {report['error']}")
    if "listener_domain" in report:
        print_listener_domain(report["listener_domain"])
    if "meta" in report:
        print("meta")
        for key, value in report["meta"].items():
            print(f"  {key:14} {json.dumps(value)}")
    if "queue" in report:
        print("queue")
        for key, value in report["queue"].items():
            print(f"  {key:14} {_show(value)}")
    if "queue_config" in report:
        print(f"queue_config (from {report['queue_config_source']})")
        for key, value in report["queue_config"].items():
            print(f"  {key:18} {json.dumps(value)}")
    egress = report.get("egress", {})
    if "pool" in egress:
        entries = ", ".join(
            f"{e['name']} (weight {e['weight']})" for e in egress["pool"]["entries"]
        )
        print("egress")
        print(f"  {'pool':14} {egress['pool']['name']}: {entries or '(no sources)'}")
    if "source" in egress:
        source = egress["source"]
        details = ", ".join(
            f"{key} {value}" for key, value in source.items() if key != "name" and value
        )
        print(f"  {'source':14} {source['name']}" + (f" ({details})" if details else ""))
    if "site_name" in egress:
        print(f"  {'site_name':14} {egress['site_name']}")
    if "site_note" in egress:
        print(f"  {'':14} {egress['site_note']}")
    if "path_config" in egress:
        print("egress_path_config")
        for key, value in egress["path_config"].items():
            print(f"  {key:46} {json.dumps(value)}")


def _show(value: object) -> str:
    if value is None:
        return "(none)"
    if value == "":
        return '"" (empty)'
    return str(value)
