"""Log hooks a policy declares with KumoMTA's policy-extras.log_hooks (`new`, `new_json`,
`new_disposition_hook`): the declaration as relaystream keeps it, without the policy's Lua
functions, and what relaystream does with each kind."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class LogHookKind(enum.Enum):
    JSON = "json"  # new_json: POST each record as JSON to `url`
    LUA = "lua"  # new: a Lua constructor delivers each record
    DISPOSITION = "disposition"  # new_disposition_hook: a Lua function per final disposition


class LogHookError(ValueError):
    """A declaration that cannot be read (a bug between the Lua module and this one)."""


@dataclass(frozen=True)
class LogHookDeclaration:
    kind: LogHookKind
    name: str
    url: str | None = None
    # KumoMTA's configure_log_hook parameters (headers, meta, ...), as declared.
    log_parameters: Mapping[str, Any] = field(default_factory=dict)
    queue_config: Mapping[str, Any] = field(default_factory=dict)
    batch_size: int = 1
    # The KumoMTA call that declared it when not policy-extras.log_hooks
    # (kumo.configure_log_hook).
    configured_by: str | None = None

    @classmethod
    def from_json(cls, text: str) -> LogHookDeclaration:
        try:
            value = json.loads(text)
            kind = LogHookKind(value["kind"])
            name = value["name"]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise LogHookError(f"bad log hook declaration {text!r}: {err}") from err
        if kind is LogHookKind.JSON and not isinstance(value.get("url"), str):
            raise LogHookError(f"log hook {name!r}: a JSON hook needs a url")
        return cls(
            kind=kind,
            name=str(name),
            url=value.get("url"),
            log_parameters=dict(value.get("log_parameters") or {}),
            queue_config=dict(value.get("queue_config") or {}),
            batch_size=int(value.get("batch_size") or 1),
            configured_by=value.get("configured_by"),
        )

    @property
    def description(self) -> str:
        if self.kind is LogHookKind.JSON:
            return f"log hook '{self.name}' (new_json, POST to {self.url})"
        if self.kind is LogHookKind.LUA and self.configured_by:
            return f"log hook '{self.name}' ({self.configured_by})"
        if self.kind is LogHookKind.LUA:
            return f"log hook '{self.name}' (new, with a Lua constructor)"
        return f"disposition hook '{self.name}' (new_disposition_hook)"
