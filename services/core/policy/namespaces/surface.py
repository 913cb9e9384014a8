"""The refusals surface.lua turns into clear errors (kumo_surface.REFUSED, the one list)."""

from __future__ import annotations

from collections.abc import Mapping

from ..host import HostCallback, HostContext
from ..kumo_surface import REFUSED


def host_callbacks(context: HostContext) -> Mapping[str, HostCallback]:
    return {"surface_refusals": lambda: dict(REFUSED)}
