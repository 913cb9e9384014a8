"""kumo.string: splitting, trimming, replacing and wrapping text, the Public Suffix List, and
MiniJinja templates (the engine KumoMTA uses), with KumoMTA's arguments and results."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache

import minijinja
from publicsuffixlist import PublicSuffixList

from ..host import MAX_HOST_TEXT_BYTES, HostCallback, HostContext, HostError

# Template work allowed per evaluation (MiniJinja's fuel): bounds a template that loops.
TEMPLATE_FUEL = 1_000_000
_UNICODE_WHITESPACE = re.compile(r"\s+")
_ASCII_WHITESPACE = re.compile(r"[ \t\n\r\x0c]+")


def text_arg(value: object, what: str = "a string") -> str:
    if not isinstance(value, str):
        raise HostError(f"expected {what}, got {type(value).__name__}")
    return value


def count_arg(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise HostError(f"expected a count (a whole number, 0 or more), got {value!r}")
    return value


def split(text: object, pattern: object) -> list[str]:
    return text_arg(text).split(text_arg(pattern, "a separator"))


def splitn(text: object, limit: object, pattern: object) -> list[str]:
    count = count_arg(limit)
    if count == 0:
        return []
    return text_arg(text).split(text_arg(pattern, "a separator"), count - 1)


def rsplit(text: object, pattern: object) -> list[str]:
    return list(reversed(text_arg(text).split(text_arg(pattern, "a separator"))))


def rsplitn(text: object, limit: object, pattern: object) -> list[str]:
    count = count_arg(limit)
    if count == 0:
        return []
    return list(reversed(text_arg(text).rsplit(text_arg(pattern, "a separator"), count - 1)))


def replacen(text: object, old: object, new: object, count: object) -> str:
    """kumo.string.replacen (count None: kumo.string.replace, every occurrence). The result's
    size is known before it is built: an empty `old` matches between every character, so a
    few kilobytes could otherwise make gigabytes outside the Lua memory limit."""
    source, pattern, replacement = text_arg(text), text_arg(old), text_arg(new)
    matches = len(source) + 1 if pattern == "" else source.count(pattern)
    limit = -1 if count is None else count_arg(count)
    if limit >= 0:
        matches = min(matches, limit)
    size = len(source) + matches * (len(replacement) - len(pattern))
    if size > MAX_HOST_TEXT_BYTES:
        raise HostError(f"the result would be {size} characters, more than {MAX_HOST_TEXT_BYTES}")
    return source.replace(pattern, replacement, limit)


def wrap(text: object, soft: object = None, hard: object = None) -> str:
    """Breaks at whitespace to keep lines under `soft`, and hard-breaks words over `hard`;
    each break is CRLF then a tab (a folded header line)."""
    soft_limit = 75 if soft is None else count_arg(soft)
    hard_limit = 900 if hard is None else count_arg(hard)
    if soft_limit < 1 or hard_limit < 1:
        raise HostError("the limits must be 1 or more")
    lines: list[str] = []
    line = ""
    for word in text_arg(text).split():
        while len(word) > hard_limit:
            if line:
                lines.append(line)
                line = ""
            lines.append(word[:hard_limit])
            word = word[hard_limit:]
        if not line:
            line = word
        elif len(line) + 1 + len(word) <= soft_limit:
            line = f"{line} {word}"
        else:
            lines.append(line)
            line = word
    if line:
        lines.append(line)
    return "\r\n\t".join(lines)


@cache
def public_suffix_list() -> PublicSuffixList:
    return PublicSuffixList()


def psl_domain(name: object) -> str | None:
    return public_suffix_list().privatesuffix(text_arg(name).lower().rstrip("."))


def psl_suffix(name: object) -> str | None:
    return public_suffix_list().publicsuffix(text_arg(name).lower().rstrip("."))


class TemplateTooLarge(Exception):
    """Raised inside a render whose output passed MAX_HOST_TEXT_BYTES (eval_template)."""


def eval_template(name: object, source: object, context_json: object, dialect: object) -> str:
    if dialect is not None and dialect != "Jinja":
        raise HostError(f"unknown template dialect {dialect!r} (relaystream has 'Jinja')")
    context = json.loads(text_arg(context_json)) if context_json is not None else {}
    if not isinstance(context, dict):
        raise HostError("the context must be a table of names to values")
    emitted = 0

    def counted(value: object) -> object:
        # Called for each {{ expression }} as it is written: the render stops at the limit
        # instead of building the whole output first (fuel counts instructions, and one
        # `{{ big }}` in a loop writes megabytes per instruction).
        nonlocal emitted
        emitted += len(value) if isinstance(value, str) else len(str(value))
        if emitted > MAX_HOST_TEXT_BYTES:
            raise TemplateTooLarge
        return value

    environment = minijinja.Environment(finalizer=counted)
    environment.fuel = TEMPLATE_FUEL
    too_large = HostError(f"template {name}: its output exceeds {MAX_HOST_TEXT_BYTES} characters")
    try:
        rendered = str(environment.render_str(text_arg(source), text_arg(name), **context))
    except minijinja.TemplateError as err:
        raise HostError(f"template {name}: {str(err).splitlines()[0]}") from err
    except TemplateTooLarge:
        raise too_large from None
    # The template's own text (not counted above) repeated by a loop, and escaping.
    if len(rendered) > MAX_HOST_TEXT_BYTES:
        raise too_large
    return rendered


def host_callbacks(context: HostContext) -> Mapping[str, HostCallback]:
    return {
        "string_split": split,
        "string_splitn": splitn,
        "string_rsplit": rsplit,
        "string_rsplitn": rsplitn,
        "string_split_whitespace": lambda text: _UNICODE_WHITESPACE.split(text_arg(text).strip()),
        "string_split_ascii_whitespace": lambda text: _ASCII_WHITESPACE.split(
            text_arg(text).strip(" \t\n\r\x0c")
        ),
        "string_trim": lambda text: text_arg(text).strip(),
        "string_trim_start": lambda text: text_arg(text).lstrip(),
        "string_trim_end": lambda text: text_arg(text).rstrip(),
        "string_replace": lambda text, old, new: replacen(text, old, new, None),
        "string_replacen": replacen,
        "string_starts_with": lambda text, prefix: text_arg(text).startswith(text_arg(prefix)),
        "string_ends_with": lambda text, suffix: text_arg(text).endswith(text_arg(suffix)),
        "string_wrap": wrap,
        "string_psl_domain": psl_domain,
        "string_psl_suffix": psl_suffix,
        "string_eval_template": eval_template,
    }
