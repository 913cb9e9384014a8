"""kumo.make_listener_domain: a listener domain checked by the domain model."""

from __future__ import annotations

import json
from collections.abc import Mapping

from ...domain.listener_domain import ListenerDomain, ListenerDomainError
from ..host import HostCallback, HostContext, HostError


def make_listener_domain(json_text: str) -> dict[str, object]:
    try:
        return ListenerDomain.from_mapping(json.loads(json_text)).to_mapping()
    except ListenerDomainError as err:
        raise HostError(f"kumo.make_listener_domain: {err}") from err


def host_callbacks(context: HostContext) -> Mapping[str, HostCallback]:
    return {"listener_domain_make": make_listener_domain}
