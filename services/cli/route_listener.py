"""The listener domain part of `relaystream route`: what the policy's get_listener_domain says
about the sender's and the recipient's domain, and whether ingest would let a client relay
at RCPT TO (KumoMTA's check; the relay networks and SMTP AUTH are ingest's settings, so the
client here is one outside them, not authenticated)."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from ..core.domain.listener_domain import ListenerDomain, relay_decision
from ..core.policy import JsonValue, Policy, PolicyRuntimeError
from ..core.runtime.settings import IngestSettings

_DEFAULTS = IngestSettings()
DEFAULT_LISTENER = f"{_DEFAULTS.smtp_bind}:{_DEFAULTS.smtp_port}"
# Stands for "any client" when none is named: in no relay_from network of a real policy.
UNNAMED_CLIENT = ipaddress.ip_address("192.0.2.1")


def listener_domain_report(
    policy: Policy, sender: str, recipient: str, listener: str, client: str | None
) -> tuple[dict[str, Any], PolicyRuntimeError | None]:
    """The report's `listener_domain` section, and the handler's failure or kumo.reject
    (ingest's answer at RCPT, which stops the route) or None."""
    connection: dict[str, JsonValue] = {"reception_protocol": "ESMTP", "received_via": listener}
    if client is not None:
        connection["received_from"] = f"[{client}]:0" if ":" in client else f"{client}:0"
    section: dict[str, Any] = {"listener": listener, "client": client}
    found: list[ListenerDomain | None] = []
    for role, address in (("sender", sender), ("recipient", recipient)):
        domain = address.rpartition("@")[2] if address else ""
        entry: dict[str, Any] = {"domain": domain, "listener_domain": None}
        section[role] = entry
        try:
            result = policy.get_listener_domain(domain, listener, connection) if domain else None
        except PolicyRuntimeError as err:
            return section, err
        entry["listener_domain"] = None if result is None else result.to_mapping()
        found.append(result)
    decision = relay_decision(
        ipaddress.ip_address(client) if client is not None else UNNAMED_CLIENT,
        relay_hosts=False,
        sender_domain=found[0],
        recipient_domain=found[1],
    )
    section["relays"] = decision.relays
    section["relay_from"] = decision.relay_from
    section["relay_to"] = decision.relay_to
    section["reports_asked"] = decision.reports_asked
    return section, None


def print_listener_domain(section: dict[str, Any]) -> None:
    client = section["client"] or "any client"
    print(f"listener_domain (on {section['listener']}, for {client})")
    for role in ("sender", "recipient"):
        entry = section.get(role)
        if entry is None:
            continue
        fields = entry["listener_domain"]
        shown = (
            "(none: relay networks and SMTP AUTH decide)"
            if fields is None
            else ", ".join(f"{key} {json.dumps(value)}" for key, value in fields.items())
        )
        print(f"  {role:14} {entry['domain'] or '(null sender)'}: {shown}")
    if "relays" not in section:
        return
    why = [rule for rule in ("relay_from", "relay_to") if section[rule]]
    verdict = f"yes ({', '.join(why)})" if why else "no: only relay networks or SMTP AUTH"
    print(f"  {'relays':14} {verdict}")
    if section["reports_asked"]:
        print(
            f"  {'':14} log_oob/log_arf: relaystream logs no reports; they are relayed as "
            "ordinary mail where relaying is allowed"
        )
