"""The limits of `POST /api/inject/v1` that are not settings, and a JSON parser that honours them.

Each bounds what one request can make the service hold or do; the README's limits table lists
them with the settings (body size, recipients, message size). Envelope addresses are held to
RFC 5321's sizes by `core.domain.envelope`. Pure: no I/O.
"""

from __future__ import annotations

import json
import re

MAX_JSON_DEPTH = 32  # nested arrays and objects; the request itself needs 5
MAX_HEADER_TEXT = 998  # characters of a subject, display name or header value (RFC 5322 line)
MAX_HEADER_NAME = 76  # characters of a header field name
MAX_HEADERS = 100  # entries of content.headers
MAX_ATTACHMENTS = 100
MAX_ATTACHMENT_LABEL = 255  # characters of content_type, content_id, file_name
MAX_MAPPING_KEYS = 1000  # entries of one substitutions or metadata object
MAX_KEY_LENGTH = 256  # characters of a substitutions or metadata key
# Values (nested ones included) in one substitutions or metadata object: the policy gets meta
# as Lua tables, and a few megabytes of `[0,0,...]` would be millions of them.
MAX_MAPPING_VALUES = 10_000

# A JSON string, escapes included (written as an unrolled loop: a run of plain characters
# per step keeps the regex engine fast on megabytes of text).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# Once strings are gone, brackets only, arrays and objects alike as `(` and `)`.
_AS_PARENTHESES = bytes.maketrans(b"[]{}", b"()()")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


class BadJson(ValueError):
    """The body is not JSON this API reads; the message says why (for a 400)."""


def json_depth_exceeds(raw: bytes, limit: int) -> bool:
    """Whether arrays and objects in `raw` nest deeper than `limit`.

    Python's parser recurses once per level and raises RecursionError past about a thousand,
    so the depth is judged before parsing, with whole-buffer operations only: strings are
    dropped, then everything but brackets, then each pass removes the innermost pairs (`()`
    once brackets are parentheses), which lowers the depth by exactly one.
    """
    skeleton = _JSON_STRING.sub(b"", raw).translate(_AS_PARENTHESES, _NOT_BRACKETS)
    for _ in range(limit):
        reduced = skeleton.replace(b"()", b"")  # the innermost pairs: they never overlap
        if reduced == skeleton:
            break
        skeleton = reduced
    # A pair left has more than `limit` levels inside it; brackets never closed nest
    # everything after them (the parser refuses them, but only after recursing that deep).
    return b"()" in skeleton or skeleton.count(b"(") > limit


def json_value_count_exceeds(value: object, limit: int) -> bool:
    """Whether `value` holds more than `limit` JSON values, nested ones included."""
    pending, count = [value], 0
    while pending:
        item = pending.pop()
        count += 1
        if count > limit:
            return True
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def parse_json_body(raw: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> object:
    """The JSON value in `raw` (UTF-8), or BadJson: not UTF-8, not JSON, nested too deep."""
    if json_depth_exceeds(raw, max_depth):
        raise BadJson(f"request body nests arrays and objects deeper than {max_depth} levels")
    try:
        text = raw.decode("utf-8")  # RFC 8259: JSON between systems is UTF-8
    except UnicodeDecodeError as error:
        raise BadJson(f"request body is not UTF-8: {error.reason} at byte {error.start}") from None
    try:
        return json.loads(text)
    except ValueError as error:
        raise BadJson(f"request body is not JSON: {error}") from None
    except RecursionError:  # cannot happen below the depth limit; a 400 all the same
        raise BadJson("request body nests too deep") from None
