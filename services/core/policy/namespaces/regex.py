"""kumo.regex: regular expressions in the syntax KumoMTA's policies use (Perl-like, named
groups as `(?<name>...)` or `(?P<name>...)`, replacements with `$name` / `${1}`), matched by
the `regex` package with a timeout: what is left of the policy call's deadline, since Python
code cannot be stopped by the Lua budget. regex.lua holds only the pattern text; compiled
patterns are cached here."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import regex

from ..host import HostCallback, HostContext, HostError

_COMPILED_CACHE_SIZE = 256
# A match gets at least this long, so a call just at its deadline still reports clearly.
_MIN_TIMEOUT = 0.001
_GROUP_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


@lru_cache(maxsize=_COMPILED_CACHE_SIZE)
def compiled(pattern: str) -> regex.Pattern[str]:
    try:
        return regex.compile(pattern, regex.VERSION1)
    except regex.error as err:
        raise HostError(f"invalid regular expression {pattern!r}: {err}") from err


def check_pattern(pattern: object) -> str:
    if not isinstance(pattern, str):
        raise HostError(f"expected a pattern string, got {type(pattern).__name__}")
    compiled(pattern)
    return pattern


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise HostError(f"expected a string, got {type(value).__name__}")
    return value


def _timeout(seconds: object) -> float:
    return max(_MIN_TIMEOUT, float(seconds)) if isinstance(seconds, int | float) else 1.0


def _expand(match: regex.Match[str], template: str) -> str:
    """The replacement for `match`: Rust regex's `$name`, `${name}` and `$$`."""
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
        except (IndexError, regex.error):
            group = None
        out.append(group or "")
    return "".join(out)


def _run(what: str, call: Any) -> Any:
    try:
        return call()
    except TimeoutError as err:
        raise HostError(f"{what}: the match ran past the policy call's deadline") from err


def captures(pattern: object, text: object, seconds: object) -> dict[object, str] | None:
    found = _run(
        "captures",
        lambda: compiled(_text(pattern)).search(_text(text), timeout=_timeout(seconds)),
    )
    if found is None:
        return None
    out: dict[object, str] = {}
    for index in range(found.re.groups + 1):
        value = found.group(index)
        if value is not None:
            out[index] = value
    for name, value in found.groupdict().items():
        if value is not None:
            out[name] = value
    return out


def replacen(
    pattern: object, text: object, limit: object, template: object, seconds: object
) -> str:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise HostError(f"expected a count (a whole number, 0 or more), got {limit!r}")
    replacement = _text(template)
    return str(
        _run(
            "replace",
            lambda: compiled(_text(pattern)).sub(
                lambda match: _expand(match, replacement),
                _text(text),
                count=limit,
                timeout=_timeout(seconds),
            ),
        )
    )


def host_callbacks(context: HostContext) -> Mapping[str, HostCallback]:
    def search(pattern: object, text: object, seconds: object) -> regex.Match[str] | None:
        return _run(
            "match",
            lambda: compiled(_text(pattern)).search(_text(text), timeout=_timeout(seconds)),
        )

    return {
        "regex_compile": check_pattern,
        "regex_escape": lambda text: regex.escape(_text(text), special_only=True),
        "regex_captures": captures,
        "regex_is_match": lambda pattern, text, seconds: search(pattern, text, seconds) is not None,
        "regex_find": lambda pattern, text, seconds: (
            found.group(0) if (found := search(pattern, text, seconds)) else None
        ),
        "regex_find_all": lambda pattern, text, seconds: [
            match.group(0)
            for match in _run(
                "find_all",
                lambda: list(
                    compiled(_text(pattern)).finditer(_text(text), timeout=_timeout(seconds))
                ),
            )
        ],
        "regex_replacen": replacen,
        "regex_split": lambda pattern, text, seconds: _run(
            "split",
            lambda: compiled(_text(pattern)).split(_text(text), timeout=_timeout(seconds)),
        ),
    }
