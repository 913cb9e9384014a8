"""kumo.make_egress_path, make_egress_source, make_egress_pool (egress.lua): the fields a
policy passes, checked by the egress domain model and returned with their defaults."""

from __future__ import annotations

import dataclasses
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


# Path fields that name a file delivery reads (a key source given as a file name).
_FILE_FIELDS = ("tls_certificate", "tls_private_key", "smtp_auth_plain_password")


def path_with_files_located(context: HostContext) -> Callable[[Mapping[str, Any]], _EgressValue]:
    """make_egress_path's check, with the files it names made absolute: relative to the
    policy's folder, as every data file of a policy is (delivery may run elsewhere)."""

    def parse(mapping: Mapping[str, Any]) -> EgressPathConfig:
        config = EgressPathConfig.from_mapping(mapping)
        located: dict[str, Any] = {
            name: str(context.data_path(value))
            for name in _FILE_FIELDS
            if isinstance(value := getattr(config, name), str)
        }
        return dataclasses.replace(config, **located) if located else config

    return parse


def host_callbacks(context: HostContext) -> Mapping[str, HostCallback]:
    return {
        "egress_make_path": checker("make_egress_path", path_with_files_located(context)),
        "egress_make_source": checker("make_egress_source", EgressSource.from_mapping),
        "egress_make_pool": checker("make_egress_pool", EgressPool.from_mapping),
    }
