"""Hypothesis strategies derived from an Avro schema: records any schema can describe.

`record_strategy(schema)` takes a self-contained JSON schema (as the released files and
`SchemaVersion.source` are) and covers every type our contracts use: primitives, enums,
fixed, arrays, maps, unions (null included), nested and named records, and
timestamp-millis as aware datetimes in several offsets, whole milliseconds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

INT32 = 2**31
INT64 = 2**63
SHORT = 6  # collection sizes: enough to cover empty, one and many

TIMEZONES = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-7))])


def _timestamps_millis() -> st.SearchStrategy[datetime]:
    naive = st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2200, 1, 1))
    whole_millis = naive.map(
        lambda moment: moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    )
    return st.builds(
        lambda moment, zone: moment.replace(tzinfo=UTC).astimezone(zone), whole_millis, TIMEZONES
    )


def _fullname(schema: dict[str, Any], namespace: str | None) -> tuple[str, str | None]:
    name = schema["name"]
    space = schema.get("namespace", namespace)
    full = name if "." in name or not space else f"{space}.{name}"
    return full, full.rpartition(".")[0] or None


def _strategy(
    schema: Any, named: dict[str, st.SearchStrategy[Any]], namespace: str | None
) -> st.SearchStrategy[Any]:
    if isinstance(schema, list):
        return st.one_of([_strategy(branch, named, namespace) for branch in schema])
    if isinstance(schema, str):
        primitive = _primitive(schema)
        if primitive is not None:
            return primitive
        reference = schema if "." in schema or not namespace else f"{namespace}.{schema}"
        return st.deferred(lambda: named[reference])
    kind = schema["type"]
    if schema.get("logicalType") == "timestamp-millis" and kind == "long":
        return _timestamps_millis()
    if kind == "record":
        full, inner = _fullname(schema, namespace)
        fields = {
            field["name"]: _strategy(field["type"], named, inner) for field in schema["fields"]
        }
        named[full] = st.fixed_dictionaries(fields)
        return named[full]
    if kind == "enum":
        full, _ = _fullname(schema, namespace)
        named[full] = st.sampled_from(schema["symbols"])
        return named[full]
    if kind == "fixed":
        full, _ = _fullname(schema, namespace)
        named[full] = st.binary(min_size=schema["size"], max_size=schema["size"])
        return named[full]
    if kind == "array":
        return st.lists(_strategy(schema["items"], named, namespace), max_size=SHORT)
    if kind == "map":
        return st.dictionaries(
            st.text(max_size=12), _strategy(schema["values"], named, namespace), max_size=SHORT
        )
    return _strategy(kind, named, namespace)


def _primitive(name: str) -> st.SearchStrategy[Any] | None:
    strategies: dict[str, st.SearchStrategy[Any]] = {
        "null": st.none(),
        "boolean": st.booleans(),
        "int": st.integers(-INT32, INT32 - 1),
        "long": st.integers(-INT64, INT64 - 1),
        "float": st.floats(width=32, allow_nan=False),
        "double": st.floats(allow_nan=False),
        "bytes": st.binary(max_size=64),
        "string": st.text(max_size=24),
    }
    return strategies.get(name)


def record_strategy(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Records valid for `schema` (a self-contained Avro record schema as JSON)."""
    return _strategy(schema, {}, None)
