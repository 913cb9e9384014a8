"""kumo.regex: regular expressions in the syntax KumoMTA's policies use (RE2's, which Rust's
regex crate shares: named groups as `(?<name>...)` or `(?P<name>...)`), replacements with
`$name` / `${1}` / `$$`. RE2 matches in time linear in the input, so a pattern cannot hold a
policy call past its deadline by backtracking (a Python callback is beyond the Lua budget's
reach). regex.lua holds only the pattern text; compiled patterns are cached here."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import re2

from ..host import HostCallback, HostContext, HostError

_COMPILED_CACHE_SIZE = 256
_GROUP_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # RE2 would write its own (non-JSON) line to stderr
    return options


_OPTIONS = _options()


@lru_cache(maxsize=_COMPILED_CACHE_SIZE)
def compiled(pattern: str) -> Any:
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as err:
        reason = err.args[0].decode("utf-8", "replace") if err.args else str(err)
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise HostError(f"invalid regular expression {pattern!r}: {reason}") from err


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise HostError(f"expected a string, got {type(value).__name__}")
    return value


def _pattern(value: object) -> Any:
    return compiled(_text(value))


def _expand(match: Any, template: str) -> str:
    """The replacement for `match`: Rust regex's `$name`, `${name}` and `$$`; a group that
    does not exist or did not take part gives ''."""
    out: list[str] = []
    i = 0
    while i < len(template):
        char = template[i]
        if char != "$" or i + 1 == len(template):
            out.append(char)
            i += 1
            continue
        if template[i + 1] == "$":
            out.append("$")
            i += 2
            continue
        if template[i + 1] == "{":
            end = template.find("}", i + 2)
            if end < 0:
                out.append(char)
                i += 1
                continue
            name, i = template[i + 2 : end], end + 1
        else:
            end = i + 1
            while end < len(template) and template[end] in _GROUP_NAME_CHARS:
                end += 1
            if end == i + 1:
                out.append(char)
                i += 1
                continue
            name, i = template[i + 1 : end], end
        try:
            group = match.group(int(name) if name.isdigit() else name)
        except (IndexError, KeyError, re2.error):
            group = None
        out.append(group or "")
    return "".join(out)


def check_pattern(pattern: object) -> str:
    _pattern(pattern)
    return str(pattern)


def captures(pattern: object, text: object) -> dict[object, str] | None:
    regex = _pattern(pattern)
    found = regex.search(_text(text))
    if found is None:
        return None
    out: dict[object, str] = {}
    for index in range(regex.groups + 1):
        value = found.group(index)
        if value is not None:
            out[index] = value
    for name, value in found.groupdict().items():
        if value is not None:
            out[name] = value
    return out


def find(pattern: object, text: object) -> str | None:
    found = _pattern(pattern).search(_text(text))
    return None if found is None else str(found.group(0))


def replacen(pattern: object, text: object, limit: object, template: object) -> str:
    """`limit` replacements, 0 for all (as Rust's Regex::replacen)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise HostError(f"expected a count (a whole number, 0 or more), got {limit!r}")
    replacement = _text(template)
    return str(
        _pattern(pattern).sub(lambda match: _expand(match, replacement), _text(text), count=limit)
    )


def host_callbacks(context: HostContext) -> Mapping[str, HostCallback]:
    return {
        "regex_compile": check_pattern,
        "regex_escape": lambda text: re2.escape(_text(text)),
        "regex_captures": captures,
        "regex_is_match": lambda pattern, text: _pattern(pattern).search(_text(text)) is not None,
        "regex_find": find,
        "regex_find_all": lambda pattern, text: [
            str(match.group(0)) for match in _pattern(pattern).finditer(_text(text))
        ],
        "regex_replacen": replacen,
        "regex_split": lambda pattern, text: list(_pattern(pattern).split(_text(text))),
    }
