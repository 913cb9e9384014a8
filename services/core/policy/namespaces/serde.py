"""kumo.serde (and its older names kumo.json_load, kumo.toml_parse, ...): JSON, TOML and YAML
to and from Lua values. Encoding takes the value as JSON text (serde.lua encodes it)."""

from __future__ import annotations

import datetime
import json
import tomllib
from collections.abc import Callable, Mapping

import tomli_w
import yaml

from ..host import HostCallback, HostContext, HostError


def strip_json_comments(text: str) -> str:
    """`text` with C block, C++ line and shell line comments outside strings turned into
    spaces, as KumoMTA's json_parse accepts them."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == '"':
            end = i + 1
            while end < n and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            out.append(text[i : end + 1])
            i = end + 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(" " * (end - i))
            i = end
        elif text.startswith("//", i) or char == "#":
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(" " * (end - i))
            i = end
        else:
            out.append(char)
            i += 1
    return "".join(out)


def plain(value: object) -> object:
    """A parsed value with what Lua cannot hold (TOML dates and times) turned into text."""
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return value


def text_parser(
    kind: str, parse: Callable[[str], object], errors: type[Exception] | tuple[type[Exception], ...]
) -> HostCallback:
    """A host callback parsing the text a policy passes as `kind`."""

    def parse_text(text: object) -> object:
        if not isinstance(text, str):
            raise HostError(f"expected a string, got {type(text).__name__}")
        try:
            return plain(parse(text))
        except errors as err:
            raise HostError(f"invalid {kind}: {err}") from err

    return parse_text


parse_json = text_parser(
    "JSON", lambda text: json.loads(strip_json_comments(text)), json.JSONDecodeError
)
parse_toml = text_parser("TOML", tomllib.loads, tomllib.TOMLDecodeError)


def _load_yaml_without_aliases(text: str) -> object:
    # An alias repeats a node without its bytes: a few hundred bytes of nested aliases
    # expand to millions of values. Data files do not need them.
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise yaml.YAMLError("aliases (*name) are not supported in policy data")
    return yaml.safe_load(text)


parse_yaml = text_parser("YAML", _load_yaml_without_aliases, yaml.YAMLError)


def encode_toml(json_text: str, pretty: bool) -> str:
    value = json.loads(json_text)
    if not isinstance(value, dict):
        raise HostError("TOML can only encode a table with string keys at the top level")
    try:
        # tomli_w's output is already the readable layout; `pretty` adds array line breaks.
        return tomli_w.dumps(value, multiline_strings=pretty)
    except (TypeError, ValueError) as err:
        raise HostError(f"cannot encode as TOML: {err}") from err


def host_callbacks(context: HostContext) -> Mapping[str, HostCallback]:
    def loading(parse: HostCallback) -> HostCallback:
        def load(name: object) -> object:
            text = context.read_data_file(name)
            try:
                return parse(text)
            except HostError as err:
                raise HostError(f"{context.data_path(name)}: {err}") from err

        return load

    return {
        "serde_json_parse": parse_json,
        "serde_json_load": loading(parse_json),
        "serde_toml_parse": parse_toml,
        "serde_toml_load": loading(parse_toml),
        "serde_yaml_parse": parse_yaml,
        "serde_yaml_load": loading(parse_yaml),
        "serde_json_pretty": lambda json_text: json.dumps(json.loads(json_text), indent=2),
        "serde_toml_encode": encode_toml,
        "serde_yaml_encode": lambda json_text: yaml.safe_dump(
            json.loads(json_text), sort_keys=False
        ),
    }
