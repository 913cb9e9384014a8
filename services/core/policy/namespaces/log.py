"""kumo.log_*: a policy's own log lines, in the service's JSON log (logger relaystream.policy),
with `policy_location` (file:line) as a field of their own."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from ..host import HostCallback, HostContext, HostError

policy_log = logging.getLogger("relaystream.policy")
LEVELS = {
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}


def log_policy(level: object, location: object, text: object) -> None:
    if level not in LEVELS:
        raise HostError(f"no log level {level!r}")
    where = str(location).removesuffix(": ")
    policy_log.log(LEVELS[str(level)], "%s: %s", where, text, extra={"policy_location": where})


def host_callbacks(context: HostContext) -> Mapping[str, HostCallback]:
    return {"log_policy": log_policy}
