"""Avro binary writers generated from a schema: one pass that checks every value and encodes it.

Why not fastavro's writer: profiling the routing service put half of its CPU in encoding, and
most of that in fastavro checking records twice (a strict validation first, because its writer
silently truncates floats into ints and writes bools as ints) and in picking union branches
(it validates the datum against every branch). A writer here is Python source generated once
per record type, with each field's check and encoding inlined (the way dataclasses and attrs
generate methods): it checks exactly once, knows a union's branch from the value's Python
type, and writes the bytes fastavro writes (a property test compares them on generated
records of every contract). Decoding stays with fastavro.

Pure: `compile_writer(schema)` takes a self-contained Avro JSON schema and returns
`write(datum, out)`, which appends the encoding of `datum` to the bytearray `out` or raises
AvroWriteError naming the path of the offending value (`.response.code`, `.recipients[2]`).

Supported: every Avro type and the `timestamp-millis` logical type (aware datetimes, or epoch
milliseconds as an int); other logical types are written as their underlying type. Unions
whose branches a Python value could not tell apart (two records, a map and a record, an int
and a long...) are refused when the schema is compiled: none of our contracts needs one, and
guessing could differ from other writers.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

Writer = Callable[[Any, bytearray], None]

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


class AvroWriteError(ValueError):
    """A value that does not fit its schema; `path` locates it inside the record."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.segments: list[str] = []  # innermost first: appended while the error unwinds

    @property
    def path(self) -> str:
        return "".join(reversed(self.segments)).lstrip(".")

    def __str__(self) -> str:
        path = self.path
        return f"{path}: {self.problem}" if path else self.problem


class UnsupportedSchema(ValueError):
    """A schema this writer cannot encode unambiguously (said at compile time)."""


def compile_writer(schema: Any) -> Writer:
    """The writer of `schema` (Avro JSON: a dict, a list for a union, or a type name)."""
    return _Generator().writer(schema)


# -- runtime helpers the generated code calls (only off the fast path) -----------------------


def write_long(value: int, out: bytearray) -> None:
    """Zig-zag varint, as Avro encodes int and long alike."""
    n = (value << 1) ^ (value >> 63)
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _expected(what: str, value: Any) -> AvroWriteError:
    return AvroWriteError(f"expected {what}, got {_describe(value)}")


def _integer(value: Any, low: int, high: int, what: str) -> int:
    """An int subclass (an IntEnum) as its plain value; anything else out of range refused."""
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return int(value)
    raise _expected(what, value)


def _real(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise _expected("a number", value)


def _float_bytes(value: Any) -> bytes:
    try:
        return struct.pack("<f", _real(value))
    except OverflowError:
        raise AvroWriteError(f"{value!r} does not fit a 32-bit float") from None


def _timestamp_millis(value: Any) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise AvroWriteError(f"naive datetime {value.isoformat()}; use an aware UTC one")
        delta = value - EPOCH
        # Floor to the millisecond, as fastavro and Java do (microseconds are never negative).
        return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    return _integer(value, LONG_MIN, LONG_MAX, "an aware datetime")


def _kind_of_value(value: Any) -> str:
    """Which union branch a Python value belongs to (see _KIND)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | datetime):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bytes | bytearray):
        return "bytes"
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def _unencodable(err: UnicodeEncodeError) -> AvroWriteError:
    return AvroWriteError(f"a string is not encodable as UTF-8: {err.reason}")


def _unknown_fields(value: Mapping[Any, Any], fields: frozenset[str], name: str) -> None:
    unknown = sorted(str(key) for key in value if key not in fields)
    raise AvroWriteError(f"unknown field(s) {', '.join(unknown)} in a {name} record")


def _missing_field(segment: str) -> AvroWriteError:
    error = AvroWriteError("missing field without default")
    error.segments.append(segment)
    return error


_HELPERS: dict[str, Any] = {
    "AvroWriteError": AvroWriteError,
    "Mapping": Mapping,
    "datetime": datetime,
    "UTC": UTC,
    "EPOCH": EPOCH,
    "write_long": write_long,
    "pack_double": struct.Struct("<d").pack,
    "expected": _expected,
    "integer": _integer,
    "real": _real,
    "float_bytes": _float_bytes,
    "timestamp_millis": _timestamp_millis,
    "kind_of_value": _kind_of_value,
    "unknown_fields": _unknown_fields,
    "unencodable": _unencodable,
    "missing_field": _missing_field,
}

# The kind of Python value a schema takes, for telling union branches apart.
_KIND = {
    "null": "null",
    "boolean": "boolean",
    "int": "number",
    "long": "number",
    "float": "number",
    "double": "number",
    "bytes": "bytes",
    "string": "string",
    "enum": "string",
    "fixed": "bytes",
    "record": "mapping",
    "error": "mapping",
    "map": "mapping",
    "array": "array",
}


# -- the generator ----------------------------------------------------------------------------


class _Generator:
    """Generates one function per record type; every other type is inlined where it is used."""

    def __init__(self) -> None:
        self._namespace: dict[str, Any] = dict(_HELPERS)
        self._named: dict[str, tuple[str, Any]] = {}  # fullname -> (record function or None)
        self._constants = 0
        self._variables = 0

    def writer(self, schema: Any) -> Writer:
        body = [
            "try:",
            *("    " + line for line in self._emit(schema, "value", None)),
            "except UnicodeEncodeError as err:  # a lone surrogate in some string",
            "    raise unencodable(err) from None",
        ]
        return self._function("write_root", body)

    # -- plumbing ---------------------------------------------------------------------------

    def _constant(self, value: Any) -> str:
        self._constants += 1
        name = f"C{self._constants}"
        self._namespace[name] = value
        return name

    def _variable(self) -> str:
        self._variables += 1
        return f"v{self._variables}"

    def _function(self, name: str, body: list[str]) -> Writer:
        source = "\n".join([f"def {name}(value, out):", *("    " + line for line in body)])
        exec(compile(source, f"<avro writer {name}>", "exec"), self._namespace)
        function: Writer = self._namespace[name]
        return function

    # -- schemas ----------------------------------------------------------------------------

    def _kind(self, schema: Any, namespace: str | None) -> str:
        if isinstance(schema, list):
            return "union"
        if isinstance(schema, str):
            if schema in PRIMITIVES:
                return _KIND[schema]
            return _KIND[self._resolve(schema, namespace)[1]["type"]]
        kind = schema.get("type")
        if isinstance(kind, str) and kind in _KIND:
            if kind == "long" and schema.get("logicalType") == "timestamp-millis":
                return "number"
            return _KIND[kind]
        return self._kind(kind, namespace)

    def _resolve(self, name: str, namespace: str | None) -> tuple[str, Any]:
        candidates = [name] if "." in name or not namespace else [f"{namespace}.{name}", name]
        for candidate in candidates:
            if candidate in self._named:
                return candidate, self._named[candidate][1]
        raise UnsupportedSchema(f"unknown named type {name!r}")

    def _emit(self, schema: Any, var: str, namespace: str | None) -> list[str]:
        """Lines that check `var` against `schema` and append its encoding to `out`."""
        if isinstance(schema, list):
            return self._union(schema, var, namespace)
        if isinstance(schema, str):
            if schema in PRIMITIVES:
                return self._primitive(schema, var)
            fullname, definition = self._resolve(schema, namespace)
            return self._named_use(fullname, definition, var)
        if not isinstance(schema, Mapping):
            raise UnsupportedSchema(f"not an Avro schema: {schema!r}")
        kind = schema.get("type")
        if kind == "long" and schema.get("logicalType") == "timestamp-millis":
            return self._timestamp(var)
        if kind in PRIMITIVES:
            return self._primitive(kind, var)
        if kind in ("record", "error", "enum", "fixed"):
            fullname = full_name(schema, namespace)
            if fullname in self._named:
                raise UnsupportedSchema(f"named type {fullname} is defined twice")
            self._named[fullname] = ("", schema)
            if kind in ("record", "error"):
                self._record(fullname, schema)
            return self._named_use(fullname, schema, var)
        if kind == "array":
            return self._array(schema["items"], var, namespace)
        if kind == "map":
            return self._map(schema["values"], var, namespace)
        return self._emit(kind, var, namespace)  # {"type": "string"} and the like

    def _named_use(self, fullname: str, definition: Any, var: str) -> list[str]:
        kind = definition["type"]
        if kind == "enum":
            symbols = self._constant({s: i for i, s in enumerate(definition["symbols"])})
            name = self._constant(fullname)
            index = self._variable()
            return [
                f"{index} = {symbols}.get({var}) if isinstance({var}, str) else None",
                f"if {index} is None:",
                f"    raise AvroWriteError(f'{{{var}!r}} is not a symbol of enum {{{name}}}')",
                f"out.append({index} << 1) if {index} < 64 else write_long({index}, out)",
            ]
        if kind == "fixed":
            size = int(definition["size"])
            what = self._constant(f"{size} bytes for fixed {fullname}")
            return [
                f"if not isinstance({var}, (bytes, bytearray)) or len({var}) != {size}:",
                f"    raise expected({what}, {var})",
                f"out += {var}",
            ]
        function = self._named[fullname][0]
        return [f"{function}({var}, out)"]

    def _primitive(self, kind: str, var: str) -> list[str]:
        if kind == "null":
            return [f"if {var} is not None:", f"    raise expected('null', {var})"]
        if kind == "boolean":
            return [
                f"if {var} is True:",
                "    out.append(1)",
                f"elif {var} is False:",
                "    out.append(0)",
                "else:",
                f"    raise expected('a boolean', {var})",
            ]
        if kind in ("int", "long"):
            low, high, what = (
                (INT_MIN, INT_MAX, "an int (32-bit)")
                if kind == "int"
                else (LONG_MIN, LONG_MAX, "a long (64-bit)")
            )
            return [
                f"if {var}.__class__ is not int or not {low} <= {var} <= {high}:",
                f"    {var} = integer({var}, {low}, {high}, {what!r})",
                *_varint(var),
            ]
        if kind == "float":
            return [f"out += float_bytes({var})"]
        if kind == "double":
            return [f"out += pack_double(real({var}))"]
        if kind == "bytes":
            return [
                f"if {var}.__class__ is not bytes and not isinstance({var}, (bytes, bytearray)):",
                f"    raise expected('bytes', {var})",
                *_length_prefixed(var),
            ]
        if kind == "string":
            data = self._variable()
            return [
                f"if {var}.__class__ is not str and not isinstance({var}, str):",
                f"    raise expected('a string', {var})",
                f"{data} = {var}.encode()",
                *_length_prefixed(data),
            ]
        raise UnsupportedSchema(f"unknown primitive {kind!r}")  # pragma: no cover

    def _timestamp(self, var: str) -> list[str]:
        delta = self._variable()
        return [
            f"if {var}.__class__ is datetime and {var}.tzinfo is UTC:",
            f"    {delta} = {var} - EPOCH",
            f"    {var} = ({delta}.days * 86400 + {delta}.seconds) * 1000"
            f" + {delta}.microseconds // 1000",
            "else:",
            f"    {var} = timestamp_millis({var})",
            f"write_long({var}, out)",
        ]

    def _record(self, fullname: str, schema: Mapping[str, Any]) -> None:
        inner = fullname.rpartition(".")[0] or None
        function = f"write_{len(self._named)}_{fullname.rpartition('.')[2]}"
        # Registered before the fields are generated, so a recursive reference resolves.
        self._named[fullname] = (function, schema)
        fields = schema["fields"]
        names = self._constant(frozenset(field["name"] for field in fields))
        record_name = self._constant(fullname)
        body = [
            "if value.__class__ is not dict and not isinstance(value, Mapping):",
            f"    raise expected('a ' + {record_name} + ' record (a mapping)', value)",
            "present = 0",
        ]
        for field in fields:
            name = field["name"]
            var = self._variable()
            key = repr(name)
            segment = repr(f".{name}")
            # Generated first: it defines the named types the field's type declares.
            field_lines = self._emit(field["type"], var, inner)
            if "default" in field:
                encoded = self._default_bytes(fullname, field, inner, var, field_lines)
                when_missing = f"    out += {self._constant(encoded)}"
            else:
                when_missing = f"    raise missing_field({segment}) from None"
            body += [
                "try:",
                f"    {var} = value[{key}]",
                "except KeyError:",
                when_missing,
                "else:",
                "    present += 1",
                "    try:",
                *("        " + line for line in field_lines),
                "    except AvroWriteError as error:",
                f"        error.segments.append({segment})",
                "        raise",
            ]
        body += [
            "if present != len(value):",
            f"    unknown_fields(value, {names}, {record_name})",
        ]
        self._function(function, body)

    def _default_bytes(
        self,
        record: str,
        field: Mapping[str, Any],
        namespace: str | None,
        var: str,
        field_lines: list[str],
    ) -> bytes:
        """A field's default, encoded once by the field's own code when the writer is made."""
        encode = self._function(f"default_{self._variable()}", [f"{var} = value", *field_lines])
        out = bytearray()
        try:
            encode(self._default_value(field["type"], field["default"], namespace), out)
        except AvroWriteError as error:
            raise UnsupportedSchema(f"{record}.{field['name']}: invalid default: {error}") from None
        return bytes(out)

    def _default_value(self, schema: Any, default: Any, namespace: str | None) -> Any:
        """An Avro JSON default as the Python value the writer takes."""
        if isinstance(schema, list):
            # A union's default is of its first branch.
            return self._default_value(schema[0], default, namespace)
        if isinstance(schema, str) and schema not in PRIMITIVES:
            fullname, schema = self._resolve(schema, namespace)
            namespace = fullname.rpartition(".")[0] or None
        kind = schema.get("type") if isinstance(schema, Mapping) else schema
        if kind in {"bytes", "fixed"} and isinstance(default, str):
            return default.encode("latin-1")  # JSON defaults spell bytes as code points 0-255
        if kind == "record" and isinstance(default, Mapping):
            inner = full_name(schema, namespace).rpartition(".")[0] or None
            return {
                field["name"]: self._default_value(field["type"], default[field["name"]], inner)
                for field in schema["fields"]
                if field["name"] in default
            }
        if kind == "array" and isinstance(default, list):
            return [self._default_value(schema["items"], item, namespace) for item in default]
        if kind == "map" and isinstance(default, Mapping):
            values = schema["values"]
            return {
                key: self._default_value(values, item, namespace) for key, item in default.items()
            }
        return default

    def _array(self, items: Any, var: str, namespace: str | None) -> list[str]:
        index, item = self._variable(), self._variable()
        return self._blocks(
            check=f"{var}.__class__ is not list and not isinstance({var}, (list, tuple))",
            expected="an array (list or tuple)",
            var=var,
            loop=f"for {index}, {item} in enumerate({var}):",
            body=self._emit(items, item, namespace),
            segment=f"[{{{index}}}]",
        )

    def _map(self, values: Any, var: str, namespace: str | None) -> list[str]:
        key, item = self._variable(), self._variable()
        return self._blocks(
            check=f"{var}.__class__ is not dict and not isinstance({var}, Mapping)",
            expected="a map",
            var=var,
            loop=f"for {key}, {item} in {var}.items():",
            body=[*self._primitive("string", key), *self._emit(values, item, namespace)],
            segment=f"[{{{key}!r}}]",
        )

    @staticmethod
    def _blocks(
        *, check: str, expected: str, var: str, loop: str, body: list[str], segment: str
    ) -> list[str]:
        """Arrays and maps: one block of all the items (count, items), then the empty block;
        an error inside names the item's index or key in its path."""
        return [
            f"if {check}:",
            f"    raise expected('{expected}', {var})",
            f"if {var}:",
            f"    write_long(len({var}), out)",
            f"    {loop}",
            "        try:",
            *("            " + line for line in body),
            "        except AvroWriteError as error:",
            f"            error.segments.append(f'{segment}')",
            "            raise",
            "out.append(0)",
        ]

    def _union(self, branches: list[Any], var: str, namespace: str | None) -> list[str]:
        kinds = [self._kind(branch, namespace) for branch in branches]
        if "union" in kinds:
            raise UnsupportedSchema("a union may not directly contain another union")
        clashing = sorted({kind for kind in kinds if kinds.count(kind) > 1})
        if clashing:
            raise UnsupportedSchema(
                f"union {branches!r}: more than one branch takes a Python {clashing[0]}; "
                "the writer could not choose between them"
            )
        if len(branches) == 2 and "null" in kinds:
            null = kinds.index("null")
            other = 1 - null
            return [
                f"if {var} is None:",
                f"    out.append({null * 2})",
                "else:",
                f"    out.append({other * 2})",
                *("    " + line for line in self._emit(branches[other], var, namespace)),
            ]
        wanted = self._constant(" or ".join(kinds))
        kind = self._variable()
        lines = [f"{kind} = kind_of_value({var})"]
        for position, (branch, branch_kind) in enumerate(zip(branches, kinds, strict=True)):
            lines += [
                f"{'if' if position == 0 else 'elif'} {kind} == {branch_kind!r}:",
                f"    out.append({position * 2})"
                if position < 64
                else f"    write_long({position}, out)",
                *("    " + line for line in self._emit(branch, var, namespace)),
            ]
        return [*lines, "else:", f"    raise expected({wanted}, {var})"]


def _varint(var: str) -> list[str]:
    """Append `var` (an int in range) as a zig-zag varint; one byte for 0..63 inline."""
    return [
        f"if 0 <= {var} < 64:",
        f"    out.append({var} << 1)",
        "else:",
        f"    write_long({var}, out)",
    ]


def _length_prefixed(var: str) -> list[str]:
    return [
        f"if len({var}) < 64:",
        f"    out.append(len({var}) << 1)",
        "else:",
        f"    write_long(len({var}), out)",
        f"out += {var}",
    ]


def full_name(schema: Mapping[str, Any], namespace: str | None = None) -> str:
    """A named type's full name: its name, qualified by its own or the enclosing namespace."""
    name = str(schema["name"])
    space = schema.get("namespace", namespace)
    return name if "." in name or not space else f"{space}.{name}"
