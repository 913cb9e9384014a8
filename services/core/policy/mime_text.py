"""Editing a message's text parts through Python's email package: msg:append_text_plain and
msg:append_text_html, and the re-encoding check_fix_conformance does (conformance.py)."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

POLICY = email.policy.SMTP  # CRLF line endings, RFC 2047 for non-ASCII header text


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, _class=EmailMessage, policy=POLICY)
    assert isinstance(message, EmailMessage)
    return message


def text_of(part: EmailMessage) -> str:
    """A text part's content: from its declared charset; 8-bit bytes under no charset (or
    US-ASCII) or not valid in it are read as UTF-8, lossily, as KumoMTA does by default."""
    payload = part.get_payload(decode=True)
    raw = payload if isinstance(payload, bytes) else b""
    charset = part.get_content_charset()
    if charset not in (None, "us-ascii"):
        try:
            return raw.decode(charset)
        except (LookupError, UnicodeDecodeError):
            pass
    return raw.decode("utf-8", errors="replace")


def set_text(message: EmailMessage, part: EmailMessage, text: str, cte: str | None = None) -> None:
    """Replaces `part`'s content with `text` (UTF-8; `cte` or the email package's choice)."""
    part.set_content(text, subtype=part.get_content_subtype(), charset="utf-8", cte=cte)
    if part is not message:
        del part["MIME-Version"]  # set_content adds it; it belongs on the message only


def append_text(data: bytes, subtype: str, content: str) -> bytes | None:
    """`data` with `content` added to its primary text/`subtype` part: for HTML before its
    closing body tag when there is one, otherwise at the end. None when there is no such
    part."""
    message = parse(data)
    part = message.get_body(preferencelist=(subtype,))
    if not isinstance(part, EmailMessage) or part.get_content_subtype() != subtype:
        return None
    text = text_of(part)
    closing = max(text.rfind("</body>"), text.rfind("</BODY>")) if subtype == "html" else -1
    if closing >= 0:
        text = text[:closing] + "\r\n" + content + text[closing:]
    else:
        text = text + ("" if text.endswith("\n") else "\r\n") + content + "\r\n"
    set_text(message, part, text)
    return message.as_bytes(policy=POLICY)
