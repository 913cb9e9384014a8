"""The RFC 5322 message of one injection recipient: the raw text expanded, or one assembled
from the builder form with Python's email package. Pure (the clock and id come from the caller).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any

from .inject_request import BuiltContent, InjectRecipient, Mailbox
from .templates import render


class MessageBuildError(ValueError):
    """This recipient's message cannot be built (e.g. a header value with a line break)."""


def substitution_values(
    recipient: InjectRecipient, substitutions: Mapping[str, Any]
) -> dict[str, Any]:
    """Request-wide values, then `email` and `name`, then the recipient's own (KumoMTA's order)."""
    values: dict[str, Any] = {**substitutions, "email": recipient.email}
    if recipient.name is not None:
        values["name"] = recipient.name
    values.update(recipient.substitutions)
    return values


def normalize_crlf(text: str) -> str:
    """Every line break as CRLF: a bare LF or CR would confuse SMTP delivery."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")


def build_message(
    content: str | BuiltContent,
    recipient: InjectRecipient,
    substitutions: Mapping[str, Any],
    *,
    now: datetime,
    message_id: str,
    hostname: str,
    max_size: int,
) -> bytes:
    """The message, or MessageBuildError; also when it would be over `max_size` bytes (each
    substitution is bounded as it is made, so an expansion never grows far past it)."""
    values = substitution_values(recipient, substitutions)
    try:
        if isinstance(content, str):
            built = normalize_crlf(render(content, values, limit=max_size)).encode("utf-8")
        else:
            message_id = f"<{message_id}@{hostname}>"
            built = _assemble(content, recipient, values, now, message_id, max_size)
    except (ValueError, TypeError, IndexError) as error:  # TemplateError is a ValueError
        raise MessageBuildError(str(error)) from error
    if len(built) > max_size:
        raise MessageBuildError(f"message of {len(built)} bytes exceeds the limit of {max_size}")
    return built


def _address(mailbox: Mailbox) -> str:
    return formataddr((mailbox.name or "", mailbox.email))


def _assemble(
    content: BuiltContent,
    recipient: InjectRecipient,
    values: Mapping[str, Any],
    now: datetime,
    message_id: str,
    max_size: int,
) -> bytes:
    def expand(text: str, *, escape_html: bool = False) -> str:
        return render(text, values, escape_html=escape_html, limit=max_size)

    # policy.SMTP: CRLF, and non-ASCII header text as RFC 2047 encoded words, which every
    # receiving MTA understands (raw UTF-8 headers need SMTPUTF8 all the way).
    message = EmailMessage(policy=policy.SMTP)
    if content.from_ is not None:
        message["From"] = _address(content.from_)
    message["To"] = _address(Mailbox(recipient.email, recipient.name))
    if content.reply_to is not None:
        message["Reply-To"] = _address(content.reply_to)
    if content.subject is not None:
        message["Subject"] = expand(content.subject)
    for name, value in content.headers.items():
        del message[name]  # a header given explicitly replaces the shortcut's
        message[name] = expand(value)
    if "Date" not in message:
        message["Date"] = format_datetime(now)
    if "Message-ID" not in message:
        message["Message-ID"] = message_id
    text = None if content.text_body is None else expand(content.text_body)
    html = None if content.html_body is None else expand(content.html_body, escape_html=True)
    if text is not None:
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
    elif html is not None:
        message.set_content(html, subtype="html")
    for attachment in content.attachments:
        maintype, subtype = attachment.content_type.split("/", 1)
        message.add_attachment(
            attachment.data,
            maintype=maintype,
            subtype=subtype,
            filename=attachment.file_name,
            disposition="inline" if attachment.content_id else "attachment",
            cid=f"<{attachment.content_id}>" if attachment.content_id else None,
        )
    return message.as_bytes()
