"""The Python side of what relaystream's policy-extras modules may use (extras_host.lua)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from ...domain.domain_names import DomainNameError, to_ascii_domain
from ...domain.log_hook import LogHookDeclaration, LogHookError, LogHookKind
from ...domain.queue_config import (
    QueueConfig,
    QueueConfigError,
    is_kumomta_tuning_field,
    is_queue_config_field,
    merge_overrides,
)
from ..host import HostCallback, HostContext, HostError, policy_log

# The key of the declared log hooks in the host context's `configured` table.
LOG_HOOKS_KEY = "log_hooks"


def declared_log_hooks(context: HostContext) -> tuple[LogHookDeclaration, ...]:
    """The log hooks the policy declared at load, in order (none: an empty tuple)."""
    declared = context.configured.get(LOG_HOOKS_KEY, [])
    assert isinstance(declared, list)
    return tuple(declared)


def queue_config_field(name: str, json_value: str) -> str:
    """How a key of a queue data file (policy-extras.queue) reads: a queue config field whose
    value is good, a KumoMTA tuning field, or not a queue config field at all."""
    if is_kumomta_tuning_field(name):
        return "tuning"
    if not is_queue_config_field(name):
        return "unknown"
    try:
        merge_overrides(QueueConfig(), {name: json.loads(json_value)})
    except QueueConfigError as err:
        raise HostError(str(err)) from err
    return "field"


def log_hook_warning(hook: LogHookDeclaration) -> str:
    """The one warning a declared log hook gets: what relaystream does with it."""
    if hook.kind is LogHookKind.JSON:
        return (
            f"policy-extras.log_hooks: {hook.description}: the services do not POST log "
            "records themselves; they are POSTed only while `relaystream log-hooks --policy "
            "FILE` runs (a process of its own that reads the log topic)"
        )
    if hook.kind is LogHookKind.LUA:
        effect = "its constructor is never called and no record is delivered by it"
    else:
        effect = "its function is never called"
    return (
        f"policy-extras.log_hooks: {hook.description} is declared but not run: relaystream "
        f"runs no Lua log hook, {effect}; the log records are on the log topic (relaystream "
        "logs), and `relaystream log-hooks` forwards them to new_json hooks"
    )


def ascii_domain(name: str) -> str:
    """A domain as queue names spell it (IDNA A-labels, lower case), so that a data file's
    'bücher.de' matches the queue of mail to BÜCHER.de; a leading '*.' is kept, and a name
    that is no domain ('default', a literal) is only lower-cased."""
    wildcard = "*." if name.startswith("*.") else ""
    try:
        return wildcard + to_ascii_domain(name[len(wildcard) :])
    except DomainNameError:
        return name.lower()


def host_callbacks(context: HostContext) -> Mapping[str, HostCallback]:
    warned: set[str] = set()

    def warn(text: str) -> None:
        if text not in warned:
            warned.add(text)
            policy_log.warning("%s", text)

    def declare_log_hook(json_text: str) -> None:
        try:
            hook = LogHookDeclaration.from_json(json_text)
        except LogHookError as err:
            raise HostError(str(err)) from err
        declared = context.configured.setdefault(LOG_HOOKS_KEY, [])
        assert isinstance(declared, list)  # only this callback writes this key
        declared.append(hook)
        warn(log_hook_warning(hook))

    return {
        "extras_warn": warn,
        "extras_queue_config_field": queue_config_field,
        "extras_ascii_domain": ascii_domain,
        "extras_declare_log_hook": declare_log_hook,
    }
