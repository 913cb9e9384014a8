"""Python callbacks a kumo namespace (namespaces/*.lua) calls into: file reads, parsers, DNS.

A callback answers the Lua side with a two-item table, {true, value} or {false, text}; the
Lua wrapper (sandbox.lua, `host_function`) turns the second into an error at the policy's
line. So no Python exception or Python object ever reaches a policy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .host_error import HostError as HostError  # re-exported: the namespaces raise it
from .message_state import MessageState

HostCallback = Callable[..., object]

# Where a policy's own output (print, warnings about what relaystream does not do) is logged.
policy_log = logging.getLogger("relaystream.policy")

# The most a policy may read from one data file (kumo.serde.*_load and the like).
MAX_DATA_FILE_BYTES = 16 * 1024 * 1024


class MessageSlot:
    """The message of the running handler (set by LuaPolicy around each handler call)."""

    def __init__(self) -> None:
        self.state: MessageState | None = None

    def current(self, method: str) -> MessageState:
        if self.state is None:
            raise HostError(f"msg:{method}() called outside a message handler")
        return self.state


@dataclass(frozen=True, slots=True)
class HostContext:
    """What a namespace's callbacks may use: the Lua runtime (to build tables), the folder
    that relative data-file paths are read from (the policy file's own), where to leave
    what the policy configured, and the message of the running handler."""

    runtime: Any
    base_dir: Path | None
    # What the policy configured through a namespace (kumo.configure_bounce_classifier's rule
    # sets, ...), by the namespace's key, for the service to apply after the load.
    configured: dict[str, object] = field(default_factory=dict)
    message: MessageSlot = field(default_factory=MessageSlot)

    def to_lua(self, value: object) -> object:
        """A Python value as a Lua value: dicts and lists become tables (lists 1-based)."""
        if isinstance(value, dict | list | tuple):
            return self.runtime.table_from(value, recursive=True)
        return value

    def data_path(self, name: object) -> Path:
        if not isinstance(name, str) or not name:
            raise HostError(f"expected a file name, got {name!r}")
        path = Path(name)
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        return path

    def read_data_file(self, name: object) -> str:
        """The text of a data file the policy names, at most MAX_DATA_FILE_BYTES."""
        path = self.data_path(name)
        try:
            with path.open("rb") as stream:
                data = stream.read(MAX_DATA_FILE_BYTES + 1)
        except OSError as err:
            raise HostError(f"cannot read {path}: {err.strerror or err}") from err
        if len(data) > MAX_DATA_FILE_BYTES:
            raise HostError(f"{path}: larger than {MAX_DATA_FILE_BYTES} bytes")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise HostError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err


def answering(context: HostContext, callback: HostCallback) -> HostCallback:
    """`callback` wrapped to answer {true, value} or {false, text}."""

    def answer(*args: object) -> object:
        try:
            value = callback(*args)
        except HostError as err:
            return context.runtime.table(False, str(err))
        except MemoryError:
            raise
        except Exception as err:  # a bug of ours must not hand a Python object to Lua
            return context.runtime.table(False, f"internal error: {type(err).__name__}: {err}")
        return context.runtime.table(True, context.to_lua(value))

    return answer


def host_table(context: HostContext, callbacks: Mapping[str, HostCallback]) -> object:
    """The Lua table of answering callbacks handed to sandbox.lua."""
    return context.runtime.table_from(
        {name: answering(context, callback) for name, callback in callbacks.items()}
    )
