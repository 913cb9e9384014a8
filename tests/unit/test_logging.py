"""Logs are one JSON object per line with the fixed fields and the extras."""

import io
import json
import logging

from relaystream.core.runtime.logging import configure_logging


def test_one_json_object_per_line_with_extras_and_exceptions() -> None:
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    try:
        check_json_lines()
    finally:
        root.handlers[:] = before[0]
        root.setLevel(before[1])


def check_json_lines() -> None:
    stream = io.StringIO()
    configure_logging("delivery", "INFO", stream=stream)
    configure_logging("delivery", "INFO", stream=stream)  # again: still one handler
    logger = logging.getLogger("relaystream.test")
    logger.debug("not shown at INFO")
    logger.info("delivered %s", "m-1", extra={"queue": "example.com", "attempt": 2})
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed", extra={"path": object()})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "INFO"
    assert first["service"] == "delivery"
    assert first["logger"] == "relaystream.test"
    assert first["msg"] == "delivered m-1"
    assert (first["queue"], first["attempt"]) == ("example.com", 2)
    assert first["ts"].endswith("+00:00")
    assert second["level"] == "ERROR"
    assert "ValueError: boom" in second["exc"]
    assert second["path"].startswith("<object object")
