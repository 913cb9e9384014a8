"""The refusals surface.lua turns into clear errors (kumo_surface.REFUSED and REFUSED_MODULES,
the one list each)."""

from __future__ import annotations

from collections.abc import Mapping

from ..host import HostCallback, HostContext
from ..kumo_surface import REFUSED, REFUSED_MODULES


def host_callbacks(context: HostContext) -> Mapping[str, HostCallback]:
    return {
        "surface_refusals": lambda: dict(REFUSED),
        "surface_refused_modules": lambda: dict(REFUSED_MODULES),
    }
