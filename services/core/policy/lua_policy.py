"""KumoMTA-compatible Lua policies, run in a lupa (Lua 5.4) sandbox (see sandbox.lua)."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import lupa.lua54 as lua54

from ..domain.egress import EgressPathConfig
from ..domain.egress_source import UNSPECIFIED, EgressPool, EgressSource
from ..domain.listener_domain import ListenerDomain, ListenerDomainError
from ..runtime.settings import ENV_PREFIX
from .base import Policy, content_hash
from .egress_events import builtin_pool, builtin_source, checked_result, no_handler
from .host import HostContext, host_table, policy_log
from .kumo_surface import CONFIGURATION_ELSEWHERE, EventKind, event_registration
from .message_state import MessageState
from .namespaces import host_callbacks, namespace_sources
from .namespaces.bounce_classifier import configured_bounce_rules
from .namespaces.extras_host import declared_log_hooks
from .types import (
    GET_LISTENER_DOMAIN,
    HANDLER_FOR_PROTOCOL,
    SMTP_SESSION_EVENTS,
    ConnectionMeta,
    EventResult,
    EventReturned,
    JsonValue,
    PolicyAccepted,
    PolicyFailed,
    PolicyLimits,
    PolicyLoadError,
    PolicyMessage,
    PolicyRejected,
    PolicyResult,
    PolicyRuntimeError,
    ReceptionProtocol,
)

SANDBOX_SOURCE = resources.files(__package__).joinpath("sandbox.lua").read_text(encoding="utf-8")
GUARDS_SOURCE = resources.files(__package__).joinpath("guards.lua").read_text(encoding="utf-8")
NAMESPACE_SOURCES = namespace_sources()


def _extras_sources() -> dict[str, str]:
    """KumoMTA's policy-extras modules as relaystream ships them (extras/NAME.lua), by NAME."""
    folder = resources.files(__package__).joinpath("extras")
    if not folder.is_dir():
        return {}
    return {
        entry.name.removesuffix(".lua"): entry.read_text(encoding="utf-8")
        for entry in folder.iterdir()
        if entry.name.endswith(".lua")
    }


EXTRAS_SOURCES = _extras_sources()
# Tags of the set_meta triples sandbox.lua returns (TAG_SCALAR, TAG_JSON, TAG_NULL there).
_TAG_JSON = 2
_TAG_NULL = 3


def _deny_attribute_get(obj: object, name: object) -> object:
    raise AttributeError("Python attributes are not accessible from a policy")


def _deny_attribute_set(obj: object, name: object, value: object) -> None:
    raise AttributeError("Python attributes are not accessible from a policy")


def new_sandbox_runtime(limits: PolicyLimits) -> Any:
    return lua54.LuaRuntime(
        register_eval=False,
        register_builtins=False,
        unpack_returned_tuples=False,
        attribute_handlers=(_deny_attribute_get, _deny_attribute_set),
        # Integers beyond 64 bits (from JSON meta) reach Lua as floats instead of failing.
        overflow_handler=float,
        max_memory=limits.memory_bytes,
    )


class LuaPolicy(Policy):
    """One Lua policy in its own Lua state. Calls are serialized: one message at a time."""

    def __init__(
        self, source: str, name: str, limits: PolicyLimits, base_dir: Path | None = None
    ) -> None:
        """`base_dir`: where the data files the policy names by relative path are read
        (its own folder, when it came from a file)."""
        self.name = name
        self.content_hash = content_hash(source)
        self._deadline_seconds = limits.deadline_seconds
        self._current: PolicyMessage | None = None
        self._connection: ConnectionMeta | None = None
        # What was already logged at this load: one line per event or configuration call.
        self._logged_once: set[str] = set()
        self._source = source
        self._limits = limits
        self._base_dir = base_dir
        self._load()

    def _load(self) -> None:
        """The policy loaded in a new Lua state, which replaces the current one only once
        the load succeeded (else PolicyLoadError)."""
        limits = self._limits
        runtime = new_sandbox_runtime(limits)
        host = HostContext(runtime, self._base_dir)
        bootstrap = runtime.eval(
            "function(source, ...)"
            " return assert(load(source, '=relaystream-sandbox', 't'))(...) end"
        )
        engine = bootstrap(
            SANDBOX_SOURCE,
            self._lookup_meta,
            self._print,
            time.monotonic,
            GUARDS_SOURCE,
            limits.instruction_step,
            max(1, limits.instruction_budget // limits.instruction_step),
            limits.deadline_seconds,
            self._event_registered,
            runtime.table_from(sorted(CONFIGURATION_ELSEWHERE)),
            self._configuration_call,
            _policy_getenv,
            self._warning,
            host_table(host, host_callbacks(host)),
            runtime.table_from([runtime.table(*entry) for entry in NAMESPACE_SOURCES]),
            runtime.table_from(EXTRAS_SOURCES),
            self._lookup_conn_meta,
        )
        status = self._call_engine_at_load(engine.load_policy, self._source, self.name)
        if status[0] != "ok":
            raise PolicyLoadError(_load_failure_text(status))
        self._runtime = runtime
        self._message_slot = host.message
        self._run_message = engine.run_message
        self._run_event = engine.run_event
        self._take_conn_changes = engine.take_conn_changes
        self._run_queue_config = engine.run_queue_config
        self._run_egress_event = engine.run_egress_event
        self._run_listener_domain = engine.run_listener_domain
        self.bounce_rule_sets = configured_bounce_rules(host)
        self.log_hooks = declared_log_hooks(host)
        self._handler_defined = {
            event: bool(engine.has_handler(event))
            for event in {*HANDLER_FOR_PROTOCOL.values(), *SMTP_SESSION_EVENTS, GET_LISTENER_DOMAIN}
        }

    def _after_memory_failure(self) -> None:
        """A call ran out of the state's memory. When the state is still more than half full
        once collected, what fills it is kept by the policy (kumo.memoize caches, its own
        tables) and every later call would fail too, until a restart: the policy is loaded
        again in a new state. A call that only needed too much for itself costs nothing."""
        # Too full even for that: what it holds is counted below.
        with contextlib.suppress(lua54.LuaMemoryError):
            self._runtime.globals().collectgarbage("collect")
        used, limit = self._runtime.get_memory_used(), self._limits.memory_bytes
        if used <= limit // 2:
            return
        policy_log.error(
            "%s: the Lua state ran out of memory and still holds %d of its %d bytes: reloading "
            "the policy in a new state (its kumo.memoize caches and tables start empty)",
            self.name,
            used,
            limit,
        )
        try:
            self._load()
        except PolicyLoadError as err:
            policy_log.error(
                "%s: reloading the policy failed, the full state stays: %s", self.name, err
            )

    def _call_engine_at_load(self, load_policy: Any, source: str, name: str) -> tuple[Any, ...]:
        try:
            return _as_tuple(load_policy(self._deadline(), source, name))
        except (lua54.LuaError, lua54.LuaMemoryError, UnicodeError) as err:
            raise PolicyLoadError(f"{name}: {err}") from err

    def on_message_received(
        self,
        protocol: ReceptionProtocol,
        message: PolicyMessage,
        connection: ConnectionMeta | None = None,
    ) -> PolicyResult:
        event = HANDLER_FOR_PROTOCOL[protocol]
        if not self._handler_defined[event]:
            return PolicyAccepted(dict(message.meta))
        self._current = message
        state = self._message_slot.state = MessageState(message)
        self._connection = connection
        try:
            out = self._run_message(self._deadline(), event, message.id)
        except (lua54.LuaError, lua54.LuaMemoryError, UnicodeError, OverflowError) as err:
            # Only the engine's own bookkeeping can get here (e.g. memory exhausted while
            # returning the results); the message fails, the service carries on.
            return self._failed(err)
        finally:
            self._apply_conn_changes(connection)
            self._current = None
            self._message_slot.state = None
            self._connection = None
        if out.__class__ is str:
            return _accepted(dict(message.meta), state)
        status = out[0]
        if status == "ok":
            meta = dict(message.meta)
            for index in range(1, len(out), 3):
                tag = out[index + 1]
                value = out[index + 2]
                if tag == _TAG_JSON:
                    meta[out[index]] = json.loads(value)
                elif tag == _TAG_NULL:
                    meta[out[index]] = None
                else:
                    meta[out[index]] = value
            return _accepted(meta, state)
        if status == "reject":
            return PolicyRejected(int(out[1]), str(out[2]))
        if status == "memory":
            self._after_memory_failure()
        return PolicyFailed(status, str(out[1]), str(out[2]) if len(out) > 2 else "")

    def has_handler(self, event: str) -> bool:
        return self._handler_defined.get(event, False)

    def on_smtp_event(
        self, event: str, args: Sequence[object], connection: ConnectionMeta
    ) -> EventResult:
        if not self._handler_defined.get(event, False):
            return EventReturned()
        lua_args = [
            self._runtime.table_from(arg) if isinstance(arg, list | tuple) else arg for arg in args
        ]
        self._connection = connection
        try:
            out = _as_tuple(self._run_event(self._deadline(), event, *lua_args))
        except (lua54.LuaError, lua54.LuaMemoryError, UnicodeError, OverflowError) as err:
            return self._failed(err)
        finally:
            self._apply_conn_changes(connection)
            self._connection = None
        status = out[0]
        if status in ("none", "ok"):
            return EventReturned(json.loads(out[1]) if len(out) > 1 else None)
        if status == "reject":
            return PolicyRejected(int(out[1]), str(out[2]))
        if status == "memory":
            self._after_memory_failure()
        return PolicyFailed(status, str(out[1]), str(out[2]) if len(out) > 2 else "")

    def _apply_conn_changes(self, connection: ConnectionMeta | None) -> None:
        """conn_meta:set_meta of the call that just ended, onto the session's metadata (a
        replay without a session drops them: its connection is long gone)."""
        changes = self._take_conn_changes()
        if isinstance(changes, tuple):
            policy_log.error(
                "%s: conn_meta:set_meta changes of the last call dropped: %s", self.name, changes[1]
            )
            return
        if changes is None or connection is None:
            return
        for key, value in json.loads(changes):
            if value is None:
                connection.pop(key, None)
            else:
                connection[key] = value

    def get_queue_config(
        self,
        domain: str,
        tenant: str | None,
        campaign: str | None,
        routing_domain: str | None,
    ) -> Mapping[str, JsonValue] | None:
        try:
            out = _as_tuple(
                self._run_queue_config(self._deadline(), domain, tenant, campaign, routing_domain)
            )
        except (lua54.LuaError, lua54.LuaMemoryError, UnicodeError) as err:
            raise self._error_raised(err) from err
        status = out[0]
        if status == "none":
            return None
        if status == "ok":
            config = json.loads(out[1])
            if not isinstance(config, dict):
                raise PolicyRuntimeError(
                    "get_queue_config returned an array; expected kumo.make_queue_config{...}"
                )
            return config
        raise self._failure_returned(out)

    def get_egress_path_config(
        self,
        routing_domain: str,
        egress_source: str,
        site_name: str,
        default: EgressPathConfig | None = None,
    ) -> EgressPathConfig:
        event = "get_egress_path_config"
        text = self._egress_event(event, routing_domain, egress_source, site_name)
        if text is None:
            return EgressPathConfig() if default is None else default
        return checked_result(event, text, EgressPathConfig.from_mapping)

    def get_egress_source(self, source_name: str) -> EgressSource:
        source = builtin_source(source_name)
        if source is not None:
            return source
        text = self._egress_event("get_egress_source", source_name)
        if text is None:
            raise no_handler("get_egress_source", source_name)
        return checked_result("get_egress_source", text, EgressSource.from_mapping)

    def get_egress_pool(self, pool_name: str | None) -> EgressPool:
        name = UNSPECIFIED if pool_name is None else pool_name
        pool = builtin_pool(name)
        if pool is not None:
            return pool
        text = self._egress_event("get_egress_pool", name)
        if text is None:
            raise no_handler("get_egress_pool", name)
        return checked_result("get_egress_pool", text, EgressPool.from_mapping)

    def _egress_event(self, event: str, *args: str) -> str | None:
        """Runs an egress event: its result's JSON text, None without a handler; raises
        PolicyRuntimeError when the handler fails, rejects or returns something else."""
        try:
            out = _as_tuple(self._run_egress_event(self._deadline(), event, *args))
        except (lua54.LuaError, lua54.LuaMemoryError, UnicodeError) as err:
            raise self._error_raised(err) from err
        status = out[0]
        if status == "none":
            return None
        if status == "ok":
            return str(out[1])
        if status == "reject":
            raise PolicyRuntimeError(f"{event}: kumo.reject({out[1]}, {out[2]!r})", "reject")
        raise self._failure_returned(out)

    def get_listener_domain(
        self, domain: str, listener: str, conn_meta: Mapping[str, JsonValue]
    ) -> ListenerDomain | None:
        try:
            out = _as_tuple(
                self._run_listener_domain(
                    self._deadline(),
                    domain,
                    listener,
                    self._runtime.table_from(dict(conn_meta), recursive=True),
                )
            )
        except (lua54.LuaError, lua54.LuaMemoryError, UnicodeError) as err:
            raise self._error_raised(err) from err
        status = out[0]
        if status == "none":
            return None
        if status == "ok":
            try:
                return ListenerDomain.from_mapping(json.loads(out[1]))
            except ListenerDomainError as err:
                raise PolicyRuntimeError(f"get_listener_domain result: {err}") from err
        if status == "reject":
            raise PolicyRuntimeError(
                f"get_listener_domain: kumo.reject({out[1]}, {out[2]!r})",
                "reject",
                rejection=PolicyRejected(int(out[1]), str(out[2])),
            )
        raise self._failure_returned(out)

    def _failed(self, err: Exception) -> PolicyFailed:
        """A call that raised instead of returning its status."""
        if isinstance(err, MemoryError):
            self._after_memory_failure()
            return PolicyFailed("memory", str(err))
        return PolicyFailed("error", str(err))

    def _error_raised(self, err: Exception) -> PolicyRuntimeError:
        """What a call that raised `err` instead of returning its status raises."""
        if isinstance(err, MemoryError):
            self._after_memory_failure()
        return PolicyRuntimeError(str(err))

    def _failure_returned(self, out: tuple[Any, ...]) -> PolicyRuntimeError:
        """What a call that returned a failure (status, message[, traceback]) raises."""
        if out[0] == "memory":
            self._after_memory_failure()
        return PolicyRuntimeError(str(out[1]), out[0], str(out[2]) if len(out) > 2 else "")

    def _deadline(self) -> float:
        """The time.monotonic() value past which the call about to start is stopped."""
        return time.monotonic() + self._deadline_seconds

    # Callbacks from sandbox.lua, reached only through Lua closures.

    def _lookup_meta(self, key: object) -> object:
        message = self._current
        if message is None or not isinstance(key, str):
            return None
        value = message.meta.get(key)
        if isinstance(value, dict | list):
            return self._runtime.table_from(value, recursive=True)
        return value

    def _lookup_conn_meta(self, key: object) -> object:
        """conn_meta:get_meta: the session's metadata; without a session (HTTP, Kafka, a
        replay) the message's original meta, which ingest filled from the session."""
        if self._connection is None:
            return self._lookup_meta(key)
        if not isinstance(key, str):
            return None
        value = self._connection.get(key)
        if isinstance(value, dict | list):
            return self._runtime.table_from(value, recursive=True)
        return value

    def _print(self, text: str) -> None:
        policy_log.info("%s: %s", self.name, text)

    def _warning(self, location: str, text: str) -> None:
        policy_log.warning("%s%s", location, text)

    def _event_registered(self, name: str, location: str) -> str | None:
        """Logs one warning per event this load registers but relaystream does not run;
        returns the error for a misspelt event name (kumo.on raises it)."""
        registration = event_registration(name)
        if registration.kind is EventKind.MISSPELT:
            return registration.text
        if registration.kind is not EventKind.RUN and f"on:{name}" not in self._logged_once:
            self._logged_once.add(f"on:{name}")
            policy_log.warning("%s%s", location, registration.text)
        return None

    def _configuration_call(self, name: str, location: str) -> None:
        if f"call:{name}" not in self._logged_once:
            self._logged_once.add(f"call:{name}")
            policy_log.info(
                "%skumo.%s: accepted, no effect in relaystream: %s",
                location,
                name,
                CONFIGURATION_ELSEWHERE[name],
            )


def _accepted(meta: dict[str, JsonValue], state: MessageState) -> PolicyAccepted:
    """The handler returned: its meta, and the envelope and data where it changed them."""
    return PolicyAccepted(
        meta,
        sender=state.sender if state.sender_changed else None,
        recipient=state.recipient if state.recipient_changed else None,
        data=state.data("get_data") if state.data_changed else None,
    )


def _policy_getenv(name: str) -> str | bool | None:
    """os.getenv: the process environment, as in KumoMTA, except relaystream's own settings
    (tokens, credentials): False, which the sandbox turns into an error."""
    if name.upper().startswith(ENV_PREFIX):
        return False
    return os.environ.get(name)


def _as_tuple(out: Any) -> tuple[Any, ...]:
    return out if isinstance(out, tuple) else (out,)


def _load_failure_text(status: tuple[Any, ...]) -> str:
    kind, message = status[0], str(status[1])
    if kind == "syntax" or kind == "error":
        return message
    return f"{message} (while loading the policy)"
