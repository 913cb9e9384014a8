"""Header lookups for `msg:get_first_named_header_value`: case-insensitive names, unfolded
values, RFC 2047 encoded-words decoded to text (KumoMTA: "decode it to UTF-8")."""

from __future__ import annotations

from email.errors import HeaderParseError
from email.header import decode_header, make_header


def parse_header_block(block: str) -> dict[str, list[str]]:
    """Raw (still encoded) header values by lowercased name, in order of appearance.
    Folding is undone by removing the line breaks; lines without a colon are ignored."""
    headers: dict[str, list[str]] = {}
    name: str | None = None
    value_lines: list[str] = []

    def finish() -> None:
        if name is not None:
            headers.setdefault(name, []).append("".join(value_lines).strip())

    for line in block.splitlines():
        if not line:
            break  # the blank line that ends the header block
        if line[0] in " \t":
            if name is not None:
                value_lines.append(line)
            continue
        finish()
        field_name, colon, rest = line.partition(":")
        if not colon:
            name = None
            continue
        name = field_name.strip().lower()
        value_lines = [rest]
    finish()
    return headers


def decode_header_value(raw: str) -> str:
    """The text of an unstructured header value, encoded-words decoded; a malformed
    encoded-word is left as it is."""
    if "=?" not in raw:
        return raw
    try:
        return str(make_header(decode_header(raw)))
    except (HeaderParseError, LookupError, UnicodeError, ValueError):
        return raw
