"""Running a few lines of Lua in a policy's message handler, for the kumo namespace tests."""

from __future__ import annotations

from pathlib import Path

from relaystream.core.policy import (
    PolicyAccepted,
    PolicyFailed,
    PolicyMessage,
    PolicyResult,
    policy_from_source,
)

MESSAGE = PolicyMessage("msg-1", "alice@example.org", "bob@example.com", {})


def run_handler(body: str, base_dir: Path | None = None) -> PolicyResult:
    source = (
        "local kumo = require 'kumo'\n"
        "kumo.on('smtp_server_message_received', function(msg)\n" + body + "\nend)\n"
    )
    return policy_from_source(source, "policy.lua", base_dir=base_dir).on_message_received(
        "ESMTP", MESSAGE
    )


def meta_of(body: str, base_dir: Path | None = None) -> dict[str, object]:
    """The meta a handler body sets (msg:set_meta)."""
    result = run_handler(body, base_dir)
    assert isinstance(result, PolicyAccepted), result
    return dict(result.meta)


def value_of(expression: str) -> object:
    """The value of one Lua expression, through set_meta (so JSON-shaped)."""
    return meta_of(f"msg:set_meta('x', {expression})").get("x")


def error_of(body: str) -> str:
    """The error message a handler body fails with (at the handler's line 3 and on)."""
    result = run_handler(body)
    assert isinstance(result, PolicyFailed), result
    assert result.reason == "error", result
    return result.message
