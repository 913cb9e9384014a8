"""The sample policies shipped with the deployment files are valid Lua.

Only compiled here, not run: running them is the policy sandbox's job (services/core/policy),
and its tests load policies through it.
"""

from __future__ import annotations

from pathlib import Path

import lupa
import pytest

from .manifests import REPO_ROOT

SAMPLE_POLICIES = (
    REPO_ROOT / "deploy" / "policy.lua",
    REPO_ROOT / "k8s" / "base" / "config" / "policy.lua",
)


def compile_error(source: str, name: str) -> str | None:
    """Lua's own syntax error for `source`, or None when it compiles."""
    load = lupa.LuaRuntime(unpack_returned_tuples=True).eval("load")
    # Lua's load returns the compiled chunk, or nil and the error message.
    result = load(source, name)
    if isinstance(result, tuple):
        return str(result[1])
    return None if result is not None else "load returned nil"


@pytest.mark.parametrize("path", SAMPLE_POLICIES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_sample_policy_compiles(path: Path) -> None:
    assert compile_error(path.read_text(encoding="utf-8"), path.name) is None


def test_a_syntax_error_is_reported() -> None:
    assert compile_error("kumo.on('x', function(msg) end", "broken.lua") is not None


@pytest.mark.parametrize("path", SAMPLE_POLICIES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_sample_policy_handles_the_documented_events(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    for event in ("smtp_server_message_received", "http_message_generated", "get_queue_config"):
        assert f"kumo.on('{event}'" in source
