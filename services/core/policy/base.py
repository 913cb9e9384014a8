"""The policy interface shared by Lua policies and declarative (YAML) policies (loader.py
loads either)."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping

from ..domain.bounce_class import RuleSet
from .types import JsonValue, PolicyMessage, PolicyResult, ReceptionProtocol


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

    @abstractmethod
    def on_message_received(
        self, protocol: ReceptionProtocol, message: PolicyMessage
    ) -> PolicyResult:
        """Runs the reception handler for `protocol` on one message. Never raises for a
        policy failure: that is a `PolicyFailed` result."""

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
