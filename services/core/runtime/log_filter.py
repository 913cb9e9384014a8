"""KumoMTA's diagnostic log filter (`kumod=trace`, `info,relaystream.delivery=debug`) applied
to Python's loggers.

A spec is comma-separated directives: a bare level sets the default (the root logger), and
`target=level` sets one logger. KumoMTA's own targets (`kumod`, `kumo`) name relaystream's
package. Levels are tracing's (trace, debug, info, warn, error, off); trace is debug here.
Anything else is refused with the reason, and nothing is changed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "off": logging.CRITICAL + 10,
}
ROOT = ""
PACKAGE = "relaystream"
_ALIASES = {"kumod": PACKAGE, "kumo": PACKAGE}


class LogFilterError(ValueError):
    """A filter spec that cannot be applied."""


@dataclass(frozen=True)
class LogDirective:
    logger: str  # "" is the root logger
    level: int


def parse_log_filter(spec: str) -> list[LogDirective]:
    directives = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        target, eq, level_name = part.rpartition("=")
        if not eq:
            target, level_name = ROOT, part
        elif not target:
            raise LogFilterError(f"{part!r}: a target before '='")
        level = LEVELS.get(level_name.strip().lower())
        if level is None:
            raise LogFilterError(f"{part!r}: level must be one of {', '.join(LEVELS)}")
        name = target.strip()
        directives.append(LogDirective(_ALIASES.get(name, name), level))
    if not directives:
        raise LogFilterError("an empty filter")
    return directives


def apply_log_filter(spec: str) -> list[LogDirective]:
    """Parses `spec` (raising LogFilterError) and sets each named logger's level."""
    directives = parse_log_filter(spec)
    for directive in directives:
        logging.getLogger(directive.logger or None).setLevel(directive.level)
    return directives
