"""The policy interface shared by Lua policies and declarative (YAML) policies."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path

from .types import (
    JsonValue,
    PolicyLimits,
    PolicyLoadError,
    PolicyMessage,
    PolicyResult,
    ReceptionProtocol,
)

DECLARATIVE_SUFFIXES = (".yaml", ".yml")


def content_hash(text: str) -> str:
    """sha256 hex of the policy text (UTF-8): identifies the exact policy that routed a message."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Policy(ABC):
    """A loaded routing policy. Not thread-safe: use one instance per thread."""

    name: str
    content_hash: str

    @staticmethod
    def load(path: Path, limits: PolicyLimits | None = None) -> Policy:
        """Loads `path`: `.yaml`/`.yml` as a declarative policy, anything else as Lua."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise PolicyLoadError(f"{path}: cannot read policy: {err}") from err
        return Policy.from_source(text, path.name, limits)

    @staticmethod
    def from_source(text: str, name: str, limits: PolicyLimits | None = None) -> Policy:
        """A policy from its text; `name` (a file name) picks the kind by its extension and
        is the name errors use (`policy.lua:7: ...`)."""
        # Imported here: both implementations import this module.
        if name.lower().endswith(DECLARATIVE_SUFFIXES):
            from .declarative import DeclarativePolicy

            return DeclarativePolicy(text, name)
        from .lua_policy import LuaPolicy

        return LuaPolicy(text, name, limits or PolicyLimits())

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
