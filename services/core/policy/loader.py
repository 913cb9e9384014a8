"""Loading a policy of either kind: the one module that knows both implementations (they
import the interface, base.py, so the interface cannot import them)."""

from __future__ import annotations

from pathlib import Path

from ..runtime.settings import Settings
from .base import Policy
from .declarative import DeclarativePolicy
from .lua_policy import LuaPolicy
from .types import PolicyLimits, PolicyLoadError

DECLARATIVE_SUFFIXES = (".yaml", ".yml")
# Without a policy file every message keeps its meta: queue = the recipient's domain.
DEFAULT_POLICY_NAME = "default.lua"
DEFAULT_POLICY_SOURCE = "-- relaystream default: no reception handler, meta unchanged\n"


def configured_policy(path: Path | None, deadline_seconds: float) -> Policy:
    """The deployment's policy (the routing.policy_path setting, which ingest and routing
    share), or the default one when none is configured."""
    if path is None:
        return policy_from_source(DEFAULT_POLICY_SOURCE, DEFAULT_POLICY_NAME)
    return policy_from_file(path, PolicyLimits(deadline_seconds=deadline_seconds))


def policy_from_file(path: Path, limits: PolicyLimits | None = None) -> Policy:
    """Loads `path`: `.yaml`/`.yml` as a declarative policy, anything else as Lua."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise PolicyLoadError(f"{path}: cannot read policy: {err}") from err
    return policy_from_source(text, path.name, limits, path.resolve().parent)


def policy_from_source(
    text: str, name: str, limits: PolicyLimits | None = None, base_dir: Path | None = None
) -> Policy:
    """A policy from its text; `name` (a file name) picks the kind by its extension and is the
    name errors use (`policy.lua:7: ...`). A Lua policy reads the data files it names by a
    relative path (kumo.toml_load('shaping.toml')) from `base_dir`."""
    if name.lower().endswith(DECLARATIVE_SUFFIXES):
        return DeclarativePolicy(text, name)
    return LuaPolicy(text, name, limits or PolicyLimits(), base_dir)


def service_policy(settings: Settings, own_path: Path | None) -> Policy | None:
    """The policy a service other than routing loads: its own file, else routing's (one
    policy file usually serves every service, as in KumoMTA); None when neither is set."""
    path = own_path or settings.routing.policy_path
    if path is None:
        return None
    # One deadline setting for every policy call, as one policy file serves every service.
    return policy_from_file(
        path, PolicyLimits(deadline_seconds=settings.routing.policy_deadline_seconds)
    )
