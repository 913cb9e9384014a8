"""The kumo namespaces a policy sees: one Lua file each, plus the Python callbacks it needs,
the way KumoMTA keeps one `mod-*` crate per namespace (`kumo.serde`, `kumo.dns`, ...).

To add one: write `NAME.lua` here (a chunk that receives sandbox.lua's `lib` and adds its
functions to `lib.kumo`), and if it calls into Python, `NAME.py` with `host_callbacks`; then
list it in NAMESPACES, in load order.

`surface` loads last: from then on a `kumo.NAME` that KumoMTA has and relaystream refuses
reads as a stand-in that fails with the reason when called (so `kumo.NAME or {}` is truthy
for those); a name KumoMTA does not have either is nil, as there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources

from ..host import HostCallback, HostContext
from . import (
    bounce_classifier,
    digest,
    dkim,
    dns,
    egress,
    encode,
    extras_host,
    listener_domain,
    log,
    maps,
    message,
    process,
    regex,
    serde,
    shaping,
    string,
    surface,
    time,
    uuid,
)


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    host_callbacks: Callable[[HostContext], Mapping[str, HostCallback]] | None = None


NAMESPACES: tuple[Namespace, ...] = (
    Namespace("serde", serde.host_callbacks),
    # After serde: it encodes its parameters with kumo.serde.json_encode.
    Namespace("bounce_classifier", bounce_classifier.host_callbacks),
    Namespace("egress", egress.host_callbacks),
    Namespace("shaping", shaping.host_callbacks),
    Namespace("listener_domain", listener_domain.host_callbacks),
    Namespace("extras_host", extras_host.host_callbacks),
    Namespace("log_hook"),  # after extras_host: it declares its hooks there
    Namespace("message", message.host_callbacks),
    Namespace("dkim", dkim.host_callbacks),
    Namespace("log", log.host_callbacks),
    Namespace("process", process.host_callbacks),
    # time before memoize (which takes its durations and clock) and dns; encode before
    # digest and uuid (which pass binary strings the way it does).
    Namespace("time", time.host_callbacks),
    Namespace("memoize"),
    Namespace("encode", encode.host_callbacks),
    Namespace("digest", digest.host_callbacks),
    Namespace("uuid", uuid.host_callbacks),
    Namespace("string", string.host_callbacks),
    Namespace("regex", regex.host_callbacks),
    Namespace("maps", maps.host_callbacks),
    Namespace("dns", dns.host_callbacks),
    # Last: it guards what the others left undefined.
    Namespace("surface", surface.host_callbacks),
)


def namespace_sources() -> list[tuple[str, str]]:
    """(name, Lua source) of each namespace, in load order."""
    folder = resources.files(__package__)
    return [
        (namespace.name, folder.joinpath(f"{namespace.name}.lua").read_text(encoding="utf-8"))
        for namespace in NAMESPACES
    ]


def host_callbacks(context: HostContext) -> dict[str, HostCallback]:
    """Every namespace's callbacks, by the name its Lua file asks for."""
    callbacks: dict[str, HostCallback] = {}
    for namespace in NAMESPACES:
        if namespace.host_callbacks is None:
            continue
        for name, callback in namespace.host_callbacks(context).items():
            if name in callbacks:
                raise ValueError(f"host callback {name!r} is defined by two namespaces")
            callbacks[name] = callback
    return callbacks
