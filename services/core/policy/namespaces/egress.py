"""kumo.make_egress_path, make_egress_source, make_egress_pool (egress.lua): the fields a
policy passes, checked by the egress domain model and returned with their defaults."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ...domain.egress import EgressPathConfig
from ...domain.egress_source import EgressPool, EgressSource
from ...domain.egress_values import EgressConfigError
from ..host import HostCallback, HostContext, HostError


class _EgressValue(Protocol):
    def to_mapping(self) -> dict[str, Any]: ...


def checker(constructor: str, parse: Callable[[Mapping[str, Any]], _EgressValue]) -> HostCallback:
    """A callback that checks a constructor's table (given as JSON text) and answers
    {json = checked fields as JSON, value = the same fields}."""

    def check(json_text: object) -> object:
        if not isinstance(json_text, str):
            raise HostError(f"kumo.{constructor}: expected a table")
        params = json.loads(json_text)
        if not isinstance(params, dict):
            # Lua's empty table encodes as {}; a list of fields is not a table of fields.
            raise HostError(f"kumo.{constructor}: expected a table of fields, got a list")
        try:
            mapping = parse(params).to_mapping()
        except EgressConfigError as err:
            raise HostError(f"kumo.{constructor}: {err}") from err
        return {"json": json.dumps(mapping, sort_keys=True), "value": mapping}

    return check


def host_callbacks(context: HostContext) -> Mapping[str, HostCallback]:
    return {
        "egress_make_path": checker("make_egress_path", EgressPathConfig.from_mapping),
        "egress_make_source": checker("make_egress_source", EgressSource.from_mapping),
        "egress_make_pool": checker("make_egress_pool", EgressPool.from_mapping),
    }
