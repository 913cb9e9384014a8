"""Declarative (YAML) policies: per-domain routing without Lua, behind the same `Policy` API.

    domains:
      - domain: example.com            # recipient domain: a name, "*.example.com" (its
                                       #   subdomains), "*" (any), or a list of these
        tenant: acme                   # optional: only messages whose meta tenant is acme
        campaign: spring               # optional: likewise for meta campaign
        sender: "*@partner.example"    # optional: glob on the envelope sender (any case)
        routing_domain: my.smarthost.com
        queue: "[10.0.0.1]"            # optional: explicit scheduled queue (meta `queue`)
        meta: {x_source: yaml}         # optional: more meta to set
        reject: {code: 550, text: "5.7.1 not here"}   # optional: reject instead
        queue_config:                  # optional: the answer to get_queue_config
          protocol: {smtp: {mx_list: [smart.host.local]}}

A message takes the FIRST entry that matches it and sets something on it (routing_domain,
queue, meta or reject). get_queue_config(domain, tenant, campaign, routing_domain) answers
with the FIRST entry that has a queue_config and matches the queue's domain (and its tenant
and campaign, when the entry names them); an entry with a `sender` condition cannot carry a
queue_config, since queues have no sender. No match: None, the caller applies defaults.
Everything is validated at load; errors name the file and the entry's line.
"""

from __future__ import annotations

import copy
import fnmatch
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..domain.egress import EgressPathConfig
from ..domain.egress_source import UNSPECIFIED, EgressPool, EgressSource
from ..domain.queue_config import QueueConfig, QueueConfigError
from .base import Policy, content_hash
from .egress_events import builtin_pool, builtin_source, no_handler
from .types import (
    ConnectionMeta,
    JsonValue,
    PolicyAccepted,
    PolicyLoadError,
    PolicyMessage,
    PolicyRejected,
    PolicyResult,
    ReceptionProtocol,
)

TOP_LEVEL_KEYS = frozenset({"domains"})
ENTRY_KEYS = frozenset(
    {
        "domain",
        "tenant",
        "campaign",
        "sender",
        "routing_domain",
        "queue",
        "meta",
        "reject",
        "queue_config",
    }
)


@dataclass(frozen=True)
class DomainRule:
    line: int
    domains: tuple[str, ...]
    tenant: str | None = None
    campaign: str | None = None
    sender: str | None = None
    set_meta: dict[str, JsonValue] = field(default_factory=dict)
    reject: PolicyRejected | None = None
    queue_config: dict[str, JsonValue] | None = None

    @property
    def acts_on_messages(self) -> bool:
        return bool(self.set_meta) or self.reject is not None

    def matches_domain(self, domain: str) -> bool:
        domain = domain.lower().rstrip(".")
        for pattern in self.domains:
            if pattern == "*" or pattern == domain:
                return True
            if pattern.startswith("*.") and domain.endswith(pattern[1:]):
                return True
        return False

    def matches_message(self, message: PolicyMessage) -> bool:
        _, _, recipient_domain = message.recipient.rpartition("@")
        if not self.matches_domain(recipient_domain):
            return False
        if self.tenant is not None and message.meta.get("tenant") != self.tenant:
            return False
        if self.campaign is not None and message.meta.get("campaign") != self.campaign:
            return False
        return self.sender is None or fnmatch.fnmatchcase(
            message.sender.lower(), self.sender.lower()
        )

    def matches_queue(self, domain: str, tenant: str | None, campaign: str | None) -> bool:
        if not self.matches_domain(domain):
            return False
        if self.tenant is not None and tenant != self.tenant:
            return False
        return self.campaign is None or campaign == self.campaign


class DeclarativePolicy(Policy):
    def __init__(self, text: str, name: str) -> None:
        self.name = name
        self.content_hash = content_hash(text)
        self.rules = _parse_rules(text, name)
        self._message_rules = [rule for rule in self.rules if rule.acts_on_messages]
        self._queue_rules = [rule for rule in self.rules if rule.queue_config is not None]

    def on_message_received(
        self,
        protocol: ReceptionProtocol,
        message: PolicyMessage,
        connection: ConnectionMeta | None = None,
    ) -> PolicyResult:
        meta = dict(message.meta)
        for rule in self._message_rules:
            if rule.matches_message(message):
                if rule.reject is not None:
                    return rule.reject
                meta.update(copy.deepcopy(rule.set_meta))
                break
        return PolicyAccepted(meta)

    def get_queue_config(
        self,
        domain: str,
        tenant: str | None,
        campaign: str | None,
        routing_domain: str | None,
    ) -> Mapping[str, JsonValue] | None:
        for rule in self._queue_rules:
            if rule.matches_queue(domain, tenant, campaign):
                return copy.deepcopy(rule.queue_config)
        return None

    # A declarative policy has no egress handlers: KumoMTA's defaults, and its built-in
    # "unspecified" source and pool; any other source or pool name is an error.

    def get_egress_path_config(
        self,
        routing_domain: str,
        egress_source: str,
        site_name: str,
        default: EgressPathConfig | None = None,
    ) -> EgressPathConfig:
        return EgressPathConfig() if default is None else default

    def get_egress_source(self, source_name: str) -> EgressSource:
        source = builtin_source(source_name)
        if source is None:
            raise no_handler("get_egress_source", source_name)
        return source

    def get_egress_pool(self, pool_name: str | None) -> EgressPool:
        name = UNSPECIFIED if pool_name is None else pool_name
        pool = builtin_pool(name)
        if pool is None:
            raise no_handler("get_egress_pool", name)
        return pool


def _parse_rules(text: str, name: str) -> list[DomainRule]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{name}:{mark.line + 1}" if mark is not None else name
        raise PolicyLoadError(f"{where}: {err.problem or err}") from err
    except yaml.YAMLError as err:
        raise PolicyLoadError(f"{name}: {err}") from err
    if data is None:
        return []
    if not isinstance(data, dict):
        raise PolicyLoadError(f"{name}:1: expected a mapping with a 'domains' list")
    unknown = sorted(str(key) for key in data if key not in TOP_LEVEL_KEYS)
    if unknown:
        raise PolicyLoadError(f"{name}:1: unknown top-level key {unknown[0]!r}")
    entries = data.get("domains") or []
    if not isinstance(entries, list):
        raise PolicyLoadError(f"{name}:1: 'domains' must be a list")
    lines = _entry_lines(root, len(entries))
    return [
        _parse_rule(entry, f"{name}:{line}", line)
        for entry, line in zip(entries, lines, strict=True)
    ]


def _entry_lines(root: yaml.Node | None, count: int) -> list[int]:
    """1-based line of each `domains` entry (line 1 when the structure is unexpected)."""
    if isinstance(root, yaml.MappingNode):
        for key_node, value_node in root.value:
            if key_node.value == "domains" and isinstance(value_node, yaml.SequenceNode):
                return [node.start_mark.line + 1 for node in value_node.value]
    return [1] * count


def _parse_rule(entry: Any, where: str, line: int) -> DomainRule:
    if not isinstance(entry, dict):
        raise PolicyLoadError(f"{where}: a domains entry must be a mapping")
    unknown = sorted(str(key) for key in entry if key not in ENTRY_KEYS)
    if unknown:
        raise PolicyLoadError(f"{where}: unknown key {unknown[0]!r}")
    domains = entry.get("domain")
    if isinstance(domains, str):
        domains = [domains]
    if not domains or not all(isinstance(d, str) and d for d in domains):
        raise PolicyLoadError(f"{where}: 'domain' must be a domain or a list of domains")
    set_meta: dict[str, JsonValue] = {}
    for key in ("routing_domain", "queue"):
        if key in entry:
            set_meta[key] = _string(entry, key, where)
    extra = entry.get("meta", {})
    if not isinstance(extra, dict) or not all(isinstance(key, str) for key in extra):
        raise PolicyLoadError(f"{where}: 'meta' must be a mapping of names to values")
    for key, value in extra.items():
        set_meta[key] = _json_value(value, f"{where}: meta {key!r}")
    rule = DomainRule(
        line=line,
        domains=tuple(d.lower().rstrip(".") for d in domains),
        tenant=_optional_string(entry, "tenant", where),
        campaign=_optional_string(entry, "campaign", where),
        sender=_optional_string(entry, "sender", where),
        set_meta=set_meta,
        reject=_reject(entry.get("reject"), where),
        queue_config=_queue_config(entry.get("queue_config"), where),
    )
    if rule.queue_config is not None and rule.sender is not None:
        raise PolicyLoadError(
            f"{where}: an entry with a 'sender' condition cannot have a queue_config "
            "(a scheduled queue has no sender)"
        )
    if rule.reject is not None and set_meta:
        raise PolicyLoadError(f"{where}: 'reject' cannot be combined with meta changes")
    return rule


def _string(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry[key]
    if not isinstance(value, str) or not value:
        raise PolicyLoadError(f"{where}: {key!r} must be a non-empty string")
    return value


def _optional_string(entry: Mapping[str, Any], key: str, where: str) -> str | None:
    return _string(entry, key, where) if key in entry else None


def _json_value(value: Any, where: str) -> JsonValue:
    try:
        result: JsonValue = json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise PolicyLoadError(f"{where}: not a JSON value ({err})") from err
    return result


def _reject(value: Any, where: str) -> PolicyRejected | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"code", "text"}:
        raise PolicyLoadError(f"{where}: 'reject' must be {{code: 5xx, text: '...'}}")
    code, text = value.get("code"), value.get("text", "")
    if not isinstance(code, int) or isinstance(code, bool) or not 400 <= code <= 599:
        raise PolicyLoadError(f"{where}: reject code must be an SMTP error code 400-599")
    if not isinstance(text, str):
        raise PolicyLoadError(f"{where}: reject text must be a string")
    return PolicyRejected(code, text)


def _queue_config(value: Any, where: str) -> dict[str, JsonValue] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise PolicyLoadError(f"{where}: 'queue_config' must be a mapping")
    config = _json_value(value, f"{where}: queue_config")
    assert isinstance(config, dict)
    try:
        QueueConfig.from_mapping(config)
    except QueueConfigError as err:
        raise PolicyLoadError(f"{where}: queue_config: {err}") from err
    return config
