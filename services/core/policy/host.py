"""Python callbacks a kumo namespace (namespaces/*.lua) calls into: file reads, parsers, DNS.

A callback answers the Lua side with a two-item table, {true, value} or {false, text}; the
Lua wrapper (sandbox.lua, `host_function`) turns the second into an error at the policy's
line. So no Python exception or Python object ever reaches a policy.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..runtime.settings import CONFIG_FILE_VARIABLE
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
        """A Python value as a Lua value: dicts and lists become tables (lists 1-based).
        Only plain data crosses (checked_plain_data), and no more of it than the Lua state
        can hold: building a table past the Lua memory limit is an unprotected error in
        lupa, which would take the process down."""
        value = checked_plain_data(value)
        if isinstance(value, dict | list):
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
        """The text of a data file the policy names, at most MAX_DATA_FILE_BYTES.

        The policy is the operator's, and so are its data files (KumoMTA reads any path), but
        not relaystream's own secrets: the settings file (tokens, credentials) and the
        process's view of itself (/proc, /sys, /dev) are refused, and so is anything but a
        regular file (a FIFO would block the policy thread past its deadline)."""
        path = self.data_path(name)
        refusal = _refused_data_path(path)
        if refusal is not None:
            raise HostError(f"cannot read {path}: {refusal}")
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as err:
            raise HostError(f"cannot read {path}: {err.strerror or err}") from err
        try:
            if not stat.S_ISREG(os.fstat(descriptor).st_mode):
                raise HostError(f"cannot read {path}: not a regular file")
            with os.fdopen(descriptor, "rb") as stream:
                descriptor = -1
                data = stream.read(MAX_DATA_FILE_BYTES + 1)
        except OSError as err:
            raise HostError(f"cannot read {path}: {err.strerror or err}") from err
        finally:
            if descriptor >= 0:
                os.close(descriptor)
        if len(data) > MAX_DATA_FILE_BYTES:
            raise HostError(f"{path}: larger than {MAX_DATA_FILE_BYTES} bytes")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise HostError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err


# The most a callback may hand to Lua at once: values (table entries count one each) and
# text bytes. Well under the Lua state's memory limit (PolicyLimits.memory_bytes).
MAX_HOST_VALUES = 200_000
MAX_HOST_TEXT_BYTES = MAX_DATA_FILE_BYTES

_PROCESS_TREES = (Path("/proc"), Path("/sys"), Path("/dev"))


def _refused_data_path(path: Path) -> str | None:
    try:
        real = path.resolve()
    except (OSError, RuntimeError) as err:
        return str(err)
    if any(real == tree or tree in real.parents for tree in _PROCESS_TREES):
        return "the process's own files (/proc, /sys, /dev) are not policy data"
    settings_file = os.environ.get(CONFIG_FILE_VARIABLE)
    if settings_file:
        try:
            if real == Path(settings_file).resolve():
                return "relaystream's settings file is not readable from a policy"
        except (OSError, RuntimeError):
            pass
    return None


def checked_plain_data(value: object) -> object:
    """`value` as plain data Lua may receive (None, bool, int, float, str, bytes, and dicts
    with text or number keys and lists of those; tuples and sets become lists), or HostError when it
    holds anything else or more than MAX_HOST_VALUES values / MAX_HOST_TEXT_BYTES of text."""
    budget = [MAX_HOST_VALUES, MAX_HOST_TEXT_BYTES]

    def plain(item: object, depth: int) -> object:
        budget[0] -= 1
        if budget[0] < 0:
            raise HostError(f"result too large for the policy (over {MAX_HOST_VALUES} values)")
        if depth > 64:
            raise HostError("result nested more than 64 levels deep")
        if item is None or isinstance(item, bool | int | float):
            return item
        if isinstance(item, str | bytes):
            budget[1] -= len(item)
            if budget[1] < 0:
                raise HostError(
                    f"result too large for the policy (over {MAX_HOST_TEXT_BYTES} bytes of text)"
                )
            return item
        if isinstance(item, dict):
            out: dict[object, object] = {}
            for key, entry in item.items():
                if isinstance(key, str):
                    budget[1] -= len(key)
                elif isinstance(key, bool) or not isinstance(key, int | float):
                    raise HostError(f"result has a {type(key).__name__} key")
                out[key] = plain(entry, depth + 1)
            return out
        if isinstance(item, list | tuple | set | frozenset):
            return [plain(entry, depth + 1) for entry in item]
        raise HostError(f"result holds a {type(item).__name__}, which a policy cannot use")

    return plain(value, 0)


def answering(context: HostContext, callback: HostCallback) -> HostCallback:
    """`callback` wrapped to answer {true, value} or {false, text}."""

    def answer(*args: object) -> object:
        try:
            value = context.to_lua(callback(*args))
        except HostError as err:
            return context.runtime.table(False, str(err))
        except MemoryError:
            raise
        except Exception as err:  # a bug of ours must not hand a Python object to Lua
            return context.runtime.table(False, f"internal error: {type(err).__name__}: {err}")
        return context.runtime.table(True, value)

    return answer


def host_table(context: HostContext, callbacks: Mapping[str, HostCallback]) -> object:
    """The Lua table of answering callbacks handed to sandbox.lua."""
    return context.runtime.table_from(
        {name: answering(context, callback) for name, callback in callbacks.items()}
    )
