"""Header values for `msg:get_first_named_header_value` and the like: RFC 2047 encoded-words
decoded to text (KumoMTA: "decode it to UTF-8")."""

from __future__ import annotations

from email.errors import HeaderParseError
from email.header import decode_header, make_header


def header_block(content: bytes) -> str:
    """The RFC 5322 header block of a whole message (up to the first empty line), as text."""
    end = len(content)
    for separator in (b"\r\n\r\n", b"\n\n"):
        found = content.find(separator)
        if found != -1 and found < end:
            end = found + len(separator) // 2
    return content[:end].decode("utf-8", errors="replace")


def decode_header_value(raw: str) -> str:
    """The text of an unstructured header value, encoded-words decoded; a malformed
    encoded-word is left as it is."""
    if "=?" not in raw:
        return raw
    try:
        return str(make_header(decode_header(raw)))
    except (HeaderParseError, LookupError, UnicodeError, ValueError):
        return raw
