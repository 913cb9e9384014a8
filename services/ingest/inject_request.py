"""The request of `POST /api/inject/v1` (KumoMTA-compatible), checked field by field.

    {"envelope_sender": "...",
     "recipients": [{"email": "...", "name": "...", "substitutions": {...}, "metadata": {...}}],
     "content": "<RFC 5322 text>" | {"subject", "text_body", "html_body", "from", "reply_to",
                                     "headers", "attachments"},
     "substitutions": {...}}

Unknown fields are errors (a misspelt field would otherwise silently do nothing), and so is a
field over its limit (inject_limits.py; addresses: RFC 5321's sizes). A recipient whose address
is invalid is not: as in KumoMTA it fails alone (`failed_recipients`) while the others are
injected. Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core.domain.envelope import (
    MAX_MAILBOX_OCTETS,
    EnvelopeAddress,
    EnvelopeAddressError,
    octet_length,
)
from .inject_limits import (
    MAX_ATTACHMENT_LABEL,
    MAX_ATTACHMENTS,
    MAX_HEADER_NAME,
    MAX_HEADER_TEXT,
    MAX_HEADERS,
    MAX_KEY_LENGTH,
    MAX_MAPPING_KEYS,
    MAX_MAPPING_VALUES,
    json_value_count_exceeds,
)
from .templates import TemplateError, check_template


class InvalidRequest(ValueError):
    """The request cannot be processed; `reasons` name each bad field."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


@dataclass(frozen=True)
class Mailbox:
    email: str
    name: str | None = None


@dataclass(frozen=True)
class InjectRecipient:
    email: str
    name: str | None = None
    substitutions: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Attachment:
    data: bytes
    content_type: str
    content_id: str | None = None
    file_name: str | None = None


@dataclass(frozen=True)
class BuiltContent:
    """The builder form of `content`: the service assembles the MIME message."""

    subject: str | None = None
    text_body: str | None = None
    html_body: str | None = None
    from_: Mailbox | None = None
    reply_to: Mailbox | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True)
class InjectRequest:
    envelope_sender: str  # "" is the null sender
    recipients: tuple[InjectRecipient, ...]
    content: str | BuiltContent
    substitutions: Mapping[str, Any] = field(default_factory=dict)


_REQUEST_FIELDS = frozenset({"envelope_sender", "recipients", "content", "substitutions"})
_RECIPIENT_FIELDS = frozenset({"email", "name", "substitutions", "metadata"})
_CONTENT_FIELDS = frozenset(
    {"subject", "text_body", "html_body", "from", "reply_to", "headers", "attachments"}
)
_MAILBOX_FIELDS = frozenset({"email", "name"})
_ATTACHMENT_FIELDS = frozenset({"data", "content_type", "content_id", "file_name", "base64"})
# RFC 5322 field names: printable ASCII but the colon.
_HEADER_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")


class _Checker:
    """Collects every problem instead of stopping at the first."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def fail(self, where: str, what: str) -> None:
        self.reasons.append(f"{where}: {what}")

    def obj(self, value: object, where: str, known: frozenset[str]) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.fail(where, "expected an object")
            return None
        for key in sorted(set(value) - known):
            self.fail(f"{where}.{key}" if where != "request" else key, "unknown field")
        return value

    def string(
        self, value: object, where: str, limit: int, *, optional: bool = False
    ) -> str | None:
        """A string of at most `limit` characters."""
        if value is None and optional:
            return None
        if not isinstance(value, str):
            self.fail(where, "expected a string" + (" or null" if optional else ""))
            return None
        if len(value) > limit:
            self.fail(where, f"{len(value)} characters, at most {limit}")
            return None
        return value

    def address(self, value: object, where: str) -> str | None:
        """A string no longer than an RFC 5321 mailbox; its syntax is the caller's business."""
        text = self.string(value, where, MAX_MAILBOX_OCTETS)
        if text is not None and octet_length(text) > MAX_MAILBOX_OCTETS:
            self.fail(
                where, f"{octet_length(text)} octets, at most {MAX_MAILBOX_OCTETS} (RFC 5321)"
            )
            return None
        return text

    def mapping(self, value: object, where: str) -> dict[str, Any]:
        """Substitutions or metadata: an object of at most MAX_MAPPING_KEYS short keys."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(where, "expected an object")
            return {}
        if len(value) > MAX_MAPPING_KEYS:
            self.fail(where, f"{len(value)} entries, at most {MAX_MAPPING_KEYS}")
            return {}
        if json_value_count_exceeds(value, MAX_MAPPING_VALUES):
            self.fail(where, f"more than {MAX_MAPPING_VALUES} values, nested ones included")
            return {}
        long_keys = [key for key in value if len(key) > MAX_KEY_LENGTH]
        if long_keys:
            self.fail(where, f"a key of {len(long_keys[0])} characters, at most {MAX_KEY_LENGTH}")
            return {}
        return value

    def template(self, text: str | None, where: str) -> None:
        if text is None:
            return
        try:
            check_template(text)
        except TemplateError as error:
            self.fail(where, str(error))


def parse_inject_request(
    body: object, *, max_recipients: int, max_message_size: int
) -> InjectRequest:
    """The request in `body` (parsed JSON); InvalidRequest listing every problem. No text of
    the content may exceed `max_message_size` characters (the built message is checked in
    bytes later)."""
    check = _Checker()
    request = check.obj(body, "request", _REQUEST_FIELDS)
    if request is None:
        raise InvalidRequest(check.reasons)
    sender = _sender(check, request)
    recipients = _recipients(check, request.get("recipients"), max_recipients)
    content = _content(check, request.get("content"), max_message_size)
    substitutions = check.mapping(request.get("substitutions"), "substitutions")
    if check.reasons or sender is None or content is None:
        raise InvalidRequest(check.reasons or ["invalid request"])
    return InjectRequest(sender, tuple(recipients), content, substitutions)


def _sender(check: _Checker, request: Mapping[str, Any]) -> str | None:
    if "envelope_sender" not in request:
        check.fail("envelope_sender", "required")
        return None
    sender = check.address(request["envelope_sender"], "envelope_sender")
    if not sender:
        return sender
    try:
        return str(EnvelopeAddress.parse(sender))
    except EnvelopeAddressError as error:
        check.fail("envelope_sender", str(error))
        return None


def _recipients(check: _Checker, value: object, max_recipients: int) -> list[InjectRecipient]:
    if not isinstance(value, list) or not value:
        check.fail("recipients", "required: a non-empty list")
        return []
    if len(value) > max_recipients:
        check.fail("recipients", f"at most {max_recipients} per request, got {len(value)}")
        return []
    recipients = []
    for index, item in enumerate(value):
        where = f"recipients[{index}]"
        entry = check.obj(item, where, _RECIPIENT_FIELDS)
        if entry is None:
            continue
        email = check.address(entry.get("email"), f"{where}.email")
        name = check.string(entry.get("name"), f"{where}.name", MAX_HEADER_TEXT, optional=True)
        substitutions = check.mapping(entry.get("substitutions"), f"{where}.substitutions")
        metadata = check.mapping(entry.get("metadata"), f"{where}.metadata")
        if email is not None:
            recipients.append(InjectRecipient(email, name, substitutions, metadata))
    return recipients


def _content(check: _Checker, value: object, max_size: int) -> str | BuiltContent | None:
    if value is None:
        check.fail("content", "required: a string or an object")
        return None
    if isinstance(value, str):
        if len(value) > max_size:
            check.fail("content", f"{len(value)} characters, at most {max_size}")
            return None
        if not value.strip():
            check.fail("content", "empty message")
        check.template(value, "content")
        return value
    content = check.obj(value, "content", _CONTENT_FIELDS)
    if content is None:
        return None
    text_body = check.string(content.get("text_body"), "content.text_body", max_size, optional=True)
    html_body = check.string(content.get("html_body"), "content.html_body", max_size, optional=True)
    if content.get("text_body") is None and content.get("html_body") is None:
        check.fail("content", "at least one of text_body and html_body is required")
    subject = check.string(
        content.get("subject"), "content.subject", MAX_HEADER_TEXT, optional=True
    )
    headers = _headers(check, content.get("headers"))
    for where, text in (
        ("content.text_body", text_body),
        ("content.html_body", html_body),
        ("content.subject", subject),
    ):
        check.template(text, where)
    return BuiltContent(
        subject=subject,
        text_body=text_body,
        html_body=html_body,
        from_=_mailbox(check, content.get("from"), "content.from"),
        reply_to=_mailbox(check, content.get("reply_to"), "content.reply_to"),
        headers=headers,
        attachments=_attachments(check, content.get("attachments"), max_size),
    )


def _headers(check: _Checker, value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        check.fail("content.headers", "expected an object")
        return {}
    if len(value) > MAX_HEADERS:
        check.fail("content.headers", f"{len(value)} headers, at most {MAX_HEADERS}")
        return {}
    headers: dict[str, str] = {}
    for name, header_value in value.items():
        if len(name) > MAX_HEADER_NAME or not _HEADER_NAME.fullmatch(name):
            shown = name if len(name) <= MAX_HEADER_NAME else name[:MAX_HEADER_NAME] + "..."
            check.fail(
                f"content.headers.{shown}",
                f"a header name is 1 to {MAX_HEADER_NAME} printable ASCII characters, no colon",
            )
            continue
        where = f"content.headers.{name}"
        text = check.string(header_value, where, MAX_HEADER_TEXT)
        if text is not None:
            headers[name] = text
            check.template(text, where)
    return headers


def _mailbox(check: _Checker, value: object, where: str) -> Mailbox | None:
    if value is None:
        return None
    entry = check.obj(value, where, _MAILBOX_FIELDS)
    if entry is None:
        return None
    email = check.address(entry.get("email"), f"{where}.email")
    name = check.string(entry.get("name"), f"{where}.name", MAX_HEADER_TEXT, optional=True)
    return None if email is None else Mailbox(email, name)


def _attachments(check: _Checker, value: object, max_size: int) -> tuple[Attachment, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        check.fail("content.attachments", "expected a list")
        return ()
    if len(value) > MAX_ATTACHMENTS:
        check.fail("content.attachments", f"{len(value)} attachments, at most {MAX_ATTACHMENTS}")
        return ()
    attachments = []
    for index, item in enumerate(value):
        where = f"content.attachments[{index}]"
        entry = check.obj(item, where, _ATTACHMENT_FIELDS)
        if entry is None:
            continue
        # Base64 takes 4 characters for 3 bytes.
        data = check.string(entry.get("data"), f"{where}.data", max_size // 3 * 4 + 4)
        label = MAX_ATTACHMENT_LABEL
        content_type = check.string(entry.get("content_type"), f"{where}.content_type", label)
        content_id = check.string(
            entry.get("content_id"), f"{where}.content_id", label, optional=True
        )
        file_name = check.string(entry.get("file_name"), f"{where}.file_name", label, optional=True)
        is_base64 = entry.get("base64", False)
        if not isinstance(is_base64, bool):
            check.fail(f"{where}.base64", "expected true or false")
            continue
        if content_type is not None and content_type.count("/") != 1:
            check.fail(f"{where}.content_type", "expected type/subtype")
            continue
        if data is None or content_type is None:
            continue
        try:
            raw = base64.b64decode(data, validate=True) if is_base64 else data.encode("utf-8")
        except (binascii.Error, ValueError):
            check.fail(f"{where}.data", "not valid base64")
            continue
        if len(raw) > max_size:
            check.fail(f"{where}.data", f"{len(raw)} bytes, at most {max_size}")
            continue
        attachments.append(Attachment(raw, content_type, content_id, file_name))
    return tuple(attachments)
