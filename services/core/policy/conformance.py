"""`msg:check_fix_conformance`: KumoMTA's RFC conformance issues, found in a message and, on
request, fixed: line endings, header names, missing Date, Message-ID and MIME-Version in place;
LINE_TOO_LONG and NEEDS_TRANSFER_ENCODING by re-encoding the MIME parts that need it (text as
quoted-printable UTF-8, lossy for bytes that are not in their charset, as KumoMTA's default;
other parts as base64) and the header values as RFC 2047 words. A header line without a colon
(MISSING_COLON_VALUE) is not guessed at: fixing it is refused with an error.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

from . import mime_text
from .message_state import HeaderField, MessageState, split_message

ISSUES = (
    "MISSING_COLON_VALUE",
    "NON_CANONICAL_LINE_ENDINGS",
    "NAME_ENDS_WITH_SPACE",
    "LINE_TOO_LONG",
    "NEEDS_TRANSFER_ENCODING",
    "MISSING_DATE_HEADER",
    "MISSING_MESSAGE_ID_HEADER",
    "MISSING_MIME_VERSION",
)
NOT_FIXABLE = ("MISSING_COLON_VALUE",)
NEEDS_REWRITE = ("LINE_TOO_LONG", "NEEDS_TRANSFER_ENCODING")
# MIME's wrapping width: a longer line (line ending excluded) is LINE_TOO_LONG.
MAX_LINE_CHARS = 78
_BARE_LINE_ENDING = re.compile(rb"\r(?!\n)|(?<!\r)\n")
_NAME_WITH_SPACE = re.compile(rb"^([^:\s]+)[ \t]+:")


class ConformanceError(ValueError):
    """Bad arguments, or a fix relaystream does not make."""


def parse_issue_set(text: object, what: str) -> set[str]:
    if text is None:
        return set()
    if not isinstance(text, str):
        raise ConformanceError(f"{what} must be a string of issue names separated by '|'")
    labels = {label.strip() for label in text.split("|") if label.strip()}
    unknown = sorted(labels - set(ISSUES))
    if unknown:
        raise ConformanceError(
            f"unknown conformance issue(s) {', '.join(unknown)} (known: {', '.join(ISSUES)})"
        )
    return labels


def find_issues(state: MessageState, data: bytes) -> set[str]:
    issues: set[str] = set()
    for field in state.fields:
        if field.name is None and field.raw.strip():
            issues.add("MISSING_COLON_VALUE")
        elif _NAME_WITH_SPACE.match(field.raw):
            issues.add("NAME_ENDS_WITH_SPACE")
    if _BARE_LINE_ENDING.search(data):
        issues.add("NON_CANONICAL_LINE_ENDINGS")
    if any(len(line.rstrip(b"\r\n")) > MAX_LINE_CHARS for line in data.splitlines()):
        issues.add("LINE_TOO_LONG")
    if any(byte >= 0x80 for byte in data):
        issues.add("NEEDS_TRANSFER_ENCODING")
    if not state.values("Date"):
        issues.add("MISSING_DATE_HEADER")
    if not state.values("Message-ID"):
        issues.add("MISSING_MESSAGE_ID_HEADER")
    if [value.strip() for value in state.values("MIME-Version")] != ["1.0"]:
        issues.add("MISSING_MIME_VERSION")
    return issues


def _ordered(issues: set[str]) -> str:
    return "|".join(issue for issue in ISSUES if issue in issues)


def check_fix(state: MessageState, checks: object, fixes: object, settings: object) -> str | None:
    """The error text when the message has an issue in `checks`; otherwise fixes the issues
    in `fixes` that it has, and returns None."""
    check_set = parse_issue_set(checks, "CHECKS")
    fix_set = parse_issue_set(fixes, "FIXES")
    if settings is not None and json.loads(str(settings)) not in ({}, []):
        raise ConformanceError(
            "the settings parameter (charset detection) is not supported in relaystream"
        )
    data = state.data("check_fix_conformance")
    issues = find_issues(state, data)
    failed = issues & check_set
    if failed:
        return f"Message has conformance issues: {_ordered(failed)}"
    to_fix = issues & fix_set
    refused = to_fix & set(NOT_FIXABLE)
    if refused:
        raise ConformanceError(
            f"fixing {_ordered(refused)} would mean guessing what a malformed header line "
            "meant; reject such mail with CHECKS instead"
        )
    if to_fix:
        _fix(state, data, to_fix)
    return None


def transport_encoded(data: bytes) -> bytes:
    """`data` with every leaf part that has 8-bit bytes or long lines re-encoded, and every
    header value with 8-bit text RFC 2047-encoded (the rest refolded where too long)."""
    message = mime_text.parse(data)
    for part in message.walk():
        if part.is_multipart() or not _needs_encoding(part.as_bytes(policy=mime_text.POLICY)):
            continue
        if part.get_content_maintype() == "text":
            mime_text.set_text(message, part, mime_text.text_of(part), cte="quoted-printable")
            continue
        part.set_content(
            part.get_payload(decode=True),
            part.get_content_maintype(),
            part.get_content_subtype(),
            cte="base64",
            disposition=part.get_content_disposition(),
            filename=part.get_filename(),
        )
        if part is not message:
            del part["MIME-Version"]  # set_content adds it; the message has it
    for part in message.walk():
        _encode_header_values(part)
    return message.as_bytes(policy=mime_text.POLICY)


def _needs_encoding(raw: bytes) -> bool:
    body = raw.split(b"\r\n\r\n", 1)[-1].split(b"\n\n", 1)[-1]
    return any(byte >= 0x80 for byte in body) or any(
        len(line.rstrip(b"\r")) > MAX_LINE_CHARS for line in body.split(b"\n")
    )


def _encode_header_values(part: EmailMessage) -> None:
    """Re-sets each header with 8-bit text as text, which the SMTP policy writes as RFC 2047
    words; all are removed and re-added so that their order is kept."""
    items = part.items()
    if all(str(value).isascii() for _, value in items):
        return
    for name in {name for name, _ in items}:
        del part[name]
    for name, value in items:
        part[name] = str(value)


def _fix(state: MessageState, data: bytes, to_fix: set[str]) -> None:
    if to_fix & set(NEEDS_REWRITE):
        data = transport_encoded(data)
        state.set_data(data)
    if "NON_CANONICAL_LINE_ENDINGS" in to_fix:
        data = _BARE_LINE_ENDING.sub(b"\r\n", data)
        state.set_data(data)
    if "NAME_ENDS_WITH_SPACE" in to_fix:
        fields, separator, body = split_message(data)
        fixed = [HeaderField.parse(_NAME_WITH_SPACE.sub(rb"\1:", f.raw, count=1)) for f in fields]
        state.set_data(b"".join(f.raw for f in fixed) + separator + body)
    if "MISSING_DATE_HEADER" in to_fix:
        date = format_datetime(datetime.now(UTC))
        state.add_field("check_fix_conformance", state.field_bytes("Date", date), first=False)
    if "MISSING_MESSAGE_ID_HEADER" in to_fix:
        domain = state.sender.rpartition("@")[2] or "relaystream.invalid"
        message_id = f"<{state.id}@{domain}>"
        state.add_field(
            "check_fix_conformance", state.field_bytes("Message-ID", message_id), first=False
        )
    if "MISSING_MIME_VERSION" in to_fix:
        state.remove_fields("check_fix_conformance", lambda name: name == "mime-version")
        state.add_field(
            "check_fix_conformance", state.field_bytes("MIME-Version", "1.0"), first=False
        )
