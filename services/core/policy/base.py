"""The policy interface shared by Lua policies and declarative (YAML) policies (loader.py
loads either)."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

from ..domain.bounce_class import RuleSet
from ..domain.egress import EgressPathConfig
from ..domain.egress_source import EgressPool, EgressSource
from ..domain.listener_domain import ListenerDomain
from ..domain.log_hook import LogHookDeclaration
from .types import (
    ConnectionMeta,
    EventResult,
    EventReturned,
    JsonValue,
    PolicyMessage,
    PolicyResult,
    ReceptionProtocol,
)


def content_hash(text: str) -> str:
    """sha256 hex of the policy text (UTF-8): identifies the exact policy that routed a message."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Policy(ABC):
    """A loaded routing policy. Not thread-safe: use one instance per thread."""

    name: str
    content_hash: str
    # The rules files `init` gave kumo.configure_bounce_classifier, read and parsed:
    # (file, rule set) in order; empty when the policy configured none.
    bounce_rule_sets: tuple[tuple[str, RuleSet], ...] = ()
    # The log hooks the policy declared (policy-extras.log_hooks), in order.
    log_hooks: tuple[LogHookDeclaration, ...] = ()

    @abstractmethod
    def on_message_received(
        self,
        protocol: ReceptionProtocol,
        message: PolicyMessage,
        connection: ConnectionMeta | None = None,
    ) -> PolicyResult:
        """Runs the reception handler for `protocol` on one message. Never raises for a
        policy failure: that is a `PolicyFailed` result. `connection` is the SMTP session's
        metadata (conn_meta, changed in place by conn_meta:set_meta); None when there is no
        live session (HTTP, Kafka, a replay), where conn_meta reads the message's meta."""

    def has_handler(self, event: str) -> bool:
        """Whether the policy registered a handler for `event` (KumoMTA's name)."""
        return False

    def on_smtp_event(
        self, event: str, args: Sequence[object], connection: ConnectionMeta
    ) -> EventResult:
        """Runs the handlers of an SMTP-time event (types.SMTP_SESSION_EVENTS) with KumoMTA's
        arguments (`args`, before conn_meta; smtp_server_ehlo's extension list after it).
        Never raises for a policy failure. A policy without such handlers returns nothing."""
        return EventReturned()

    @abstractmethod
    def get_queue_config(
        self,
        domain: str,
        tenant: str | None,
        campaign: str | None,
        routing_domain: str | None,
    ) -> Mapping[str, JsonValue] | None:
        """The policy's queue config fields for a scheduled queue (the parsed components of
        its name), or None when the policy has no opinion (the caller applies defaults).
        Raises `PolicyRuntimeError` when the handler fails."""

    @abstractmethod
    def get_egress_path_config(
        self,
        routing_domain: str,
        egress_source: str,
        site_name: str,
        default: EgressPathConfig | None = None,
    ) -> EgressPathConfig:
        """KumoMTA's get_egress_path_config: how mail from `egress_source` to the site
        `site_name` (MX rollup name, or mx_list:/literal) travels. No handler: `default`
        (delivery's settings), else KumoMTA's defaults. Raises `PolicyRuntimeError` when the
        handler fails or rejects (never a default then: smarthosted mail must not go to the
        public MX)."""

    @abstractmethod
    def get_egress_source(self, source_name: str) -> EgressSource:
        """KumoMTA's get_egress_source. The source "unspecified" is KumoMTA's built-in one
        (no handler called); any other name needs the policy's handler. Raises
        `PolicyRuntimeError` when there is none, or it fails."""

    @abstractmethod
    def get_egress_pool(self, pool_name: str | None) -> EgressPool:
        """KumoMTA's get_egress_pool for a queue config's egress_pool. None or "unspecified"
        is KumoMTA's built-in pool of the "unspecified" source; any other name needs the
        policy's handler. Raises `PolicyRuntimeError` when there is none, or it fails."""

    def get_listener_domain(
        self, domain: str, listener: str, conn_meta: Mapping[str, JsonValue]
    ) -> ListenerDomain | None:
        """KumoMTA's get_listener_domain: what the policy says about mail to (at RCPT TO) or
        from `domain` on the listener at `listener` (`ip:port`), given the connection's meta
        (`received_from`, `authn_id`, ...); None when it has no opinion (the listener's own
        relay rules apply). Raises `PolicyRuntimeError` when the handler fails."""
        return None
