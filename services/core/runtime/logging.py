"""Structured logs: one JSON object per line on stderr, configured once per process.

Every line has `ts` (UTC, ISO 8601 with milliseconds), `level`, `service`, `logger` and `msg`;
fields passed with `extra={...}` are added as they are (non-JSON values as their `str`), and an
exception as `exc`. Kubernetes and any log shipper can then index fields without parsing text.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


_configured_handler: logging.Handler | None = None


def configure_logging(service: str, level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send all logs of this process as JSON lines to `stream` (stderr by default).

    Calling it again replaces the handler it installed before (tests, or a level change), so
    there is never more than one.
    """
    global _configured_handler
    root = logging.getLogger()
    if _configured_handler is not None:
        root.removeHandler(_configured_handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root.addHandler(handler)
    root.setLevel(level)
    # aiokafka logs every connection at INFO; keep its noise out unless asked for DEBUG.
    logging.getLogger("aiokafka").setLevel("DEBUG" if level == "DEBUG" else "WARNING")
    _configured_handler = handler
