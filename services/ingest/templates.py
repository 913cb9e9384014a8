"""Template substitution of the injection API: the `{{ name }}` subset of Jinja.

KumoMTA expands content with MiniJinja. We support what injection requests overwhelmingly use,
variable references with dotted lookups (`{{ name }}`, `{{ user.first }}`); an unknown name
renders as nothing (Jinja's default). Statements (`{% %}`), comments (`{# #}`) and filters are
refused when the request is checked rather than silently sent unexpanded. Pure.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

_EXPRESSION = re.compile(r"\{\{\s*(.*?)\s*\}\}", re.DOTALL)
_REFERENCE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_UNSUPPORTED = re.compile(r"\{%|\{#")


class TemplateError(ValueError):
    """A template uses something this subset does not support."""


def check_template(text: str) -> None:
    """Raises TemplateError unless every construct in `text` is supported."""
    if _UNSUPPORTED.search(text):
        raise TemplateError("template statements and comments ({% %}, {# #}) are not supported")
    for match in _EXPRESSION.finditer(text):
        if not _REFERENCE.fullmatch(match.group(1)):
            raise TemplateError(
                f"unsupported template expression {{{{ {match.group(1)} }}}}: "
                "only names and dotted names"
            )


def _lookup(values: Mapping[str, Any], reference: str) -> Any:
    current: Any = values
    for part in reference.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return None
        current = current[part]
    return current


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render(
    text: str, values: Mapping[str, Any], *, escape_html: bool = False, limit: int | None = None
) -> str:
    """`text` with each `{{ reference }}` replaced; HTML-escaped when `escape_html`
    (as MiniJinja auto-escapes html_body). TemplateError once the result passes `limit`
    characters, checked as it grows: a large value referenced many times must not build a
    huge string first."""
    pieces: list[str] = []
    size = 0
    position = 0
    for match in _EXPRESSION.finditer(text):
        rendered = _text(_lookup(values, match.group(1)))
        pieces += (
            text[position : match.start()],
            html.escape(rendered) if escape_html else rendered,
        )
        size += len(pieces[-2]) + len(pieces[-1])
        position = match.end()
        if limit is not None and size > limit:
            break
    pieces.append(text[position:])
    if limit is not None and size + len(pieces[-1]) > limit:
        raise TemplateError(f"substitutions expand the text past {limit} characters")
    return "".join(pieces)
