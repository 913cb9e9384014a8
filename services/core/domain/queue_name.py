"""Scheduled queue names (ROUTING.md section 2): `campaign:tenant@domain!routing_domain`.

Parsing and formatting follow KumoMTA's `QueueNameComponents`: split at the first `@`, the
prefix at its first `:`, the domain part at its first `!`. Components are verbatim strings:
no case folding or escaping, a `:port` stays inside its domain. `format(parse(s)) == s` for
every string `s`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .domain_names import DomainNameError, to_ascii_domain

NULL_QUEUE = "null"
"""Messages in the queue named `null` are accepted and then discarded."""


class QueueNameError(ValueError):
    """Metadata that cannot name a queue (a non-string `queue`, a bad recipient domain)."""


def is_null_queue(name: str) -> bool:
    return name == NULL_QUEUE


def override_targets(queue: str) -> tuple[str, ...]:
    """The queue-config override targets that apply to `queue`, in the order the scheduler
    merges them: its domain's, then its exact name's (which therefore wins)."""
    try:
        domain: str | None = QueueName.parse(queue).domain
    except QueueNameError:
        domain = None
    return (queue,) if domain is None or domain == queue else (domain, queue)


@dataclass(frozen=True)
class QueueName:
    campaign: str | None
    tenant: str | None
    domain: str
    routing_domain: str | None = None

    @classmethod
    def parse(cls, text: str) -> QueueName:
        prefix, at, domain_part = text.partition("@")
        if not at:
            domain_part, campaign, tenant = text, None, None
        else:
            campaign_text, colon, tenant_text = prefix.partition(":")
            if colon:
                campaign, tenant = campaign_text, tenant_text
            else:
                campaign, tenant = None, prefix
        domain, bang, routing_domain = domain_part.partition("!")
        return cls(campaign, tenant, domain, routing_domain if bang else None)

    def format(self) -> str:
        suffix = "" if self.routing_domain is None else f"!{self.routing_domain}"
        domain = f"{self.domain}{suffix}"
        if self.campaign is not None:
            return f"{self.campaign}:{self.tenant or ''}@{domain}"
        if self.tenant is not None:
            return f"{self.tenant}@{domain}"
        return domain

    def __str__(self) -> str:
        return self.format()

    @property
    def effective_domain(self) -> str:
        """The name that MX resolution and connection targets use."""
        return self.domain if self.routing_domain is None else self.routing_domain

    @staticmethod
    def for_message(recipient_domain: str, meta: Mapping[str, Any]) -> str:
        """The scheduled queue name of a message (after the reception policy ran).

        Meta `queue`, when set, is the name verbatim; otherwise the name is built from meta
        `campaign`, `tenant`, `routing_domain` and the normalized recipient domain. A meta
        key that is absent or null counts as unset; any other non-string value is an error.
        """
        queue = _meta_string(meta, "queue")
        if queue is not None:
            return queue
        return QueueName(
            campaign=_meta_string(meta, "campaign"),
            tenant=_meta_string(meta, "tenant"),
            domain=normalize_recipient_domain(recipient_domain),
            routing_domain=_meta_string(meta, "routing_domain"),
        ).format()


def normalize_recipient_domain(domain: str) -> str:
    """A recipient domain as it appears in a queue name: lowercased, IDNA A-label form;
    domain literals keep their brackets (their text is lowercased too, as KumoMTA does)."""
    if domain.startswith("["):
        return domain.lower()
    try:
        return to_ascii_domain(domain)
    except DomainNameError as err:
        raise QueueNameError(str(err)) from err


def _meta_string(meta: Mapping[str, Any], key: str) -> str | None:
    value = meta.get(key)
    if value is None or isinstance(value, str):
        return value
    raise QueueNameError(f"meta {key!r} must be a string, got {type(value).__name__}")


READY_QUEUE_PROTOCOL = "smtp_client"


def ready_queue_name(egress_source: str, site_name: str) -> str:
    """KumoMTA's ready queue name (`source->site@smtp_client`): what delivery's connection
    pool for an egress source and MX site stands for."""
    return f"{egress_source}->{site_name}@{READY_QUEUE_PROTOCOL}"
