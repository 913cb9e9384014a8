"""SMTP replies (RFC 5321 + RFC 3463 enhanced status codes) and how delivery classifies them
(ROUTING.md section 8), following KumoMTA's rfc5321 client and its record classification.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_ENHANCED = re.compile(r"([0-9]+)\.([0-9]+)\.([0-9]+) ")
_ENHANCED_CLASSES = frozenset({2, 4, 5})
_MAX_SUBJECT_OR_DETAIL = 65535


class SmtpReplyError(ValueError):
    """Text that is not an SMTP reply."""


@dataclass(frozen=True)
class EnhancedStatusCode:
    class_: int
    subject: int
    detail: int

    def __str__(self) -> str:
        return f"{self.class_}.{self.subject}.{self.detail}"

    def to_dict(self) -> dict[str, int]:
        return {"class": self.class_, "subject": self.subject, "detail": self.detail}

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> EnhancedStatusCode:
        return cls(int(value["class"]), int(value["subject"]), int(value["detail"]))


def split_enhanced_code(text: str) -> tuple[EnhancedStatusCode | None, str]:
    """`"5.1.1 No such user"` -> (5.1.1, "No such user"). Only classes 2, 4 and 5 exist, and
    the code must be followed by a space and text; anything else is plain content."""
    match = _ENHANCED.match(text)
    if match is None:
        return None, text
    class_, subject, detail = (int(group) for group in match.groups())
    if (
        class_ not in _ENHANCED_CLASSES
        or subject > _MAX_SUBJECT_OR_DETAIL
        or detail > _MAX_SUBJECT_OR_DETAIL
    ):
        return None, text
    return EnhancedStatusCode(class_, subject, detail), text[match.end() :]


class TooManyRecipients(enum.Enum):
    YES = "Yes"
    NO = "No"
    MAYBE = "Maybe"


@dataclass(frozen=True)
class SmtpResponse:
    """A reply as KumoMTA logs it: lines of a multi-line reply joined by `\\n` in `content`,
    the enhanced code taken from the first line (and stripped from the following ones),
    `command` the command that drew it (None for replies we make up)."""

    code: int
    enhanced_code: EnhancedStatusCode | None
    content: str
    command: str | None = None

    @classmethod
    def parse(cls, text: str, command: str | None = None) -> SmtpResponse:
        """A reply from its wire text (`"250-first\\r\\n250 last\\r\\n"`)."""
        lines = text.replace("\r\n", "\n").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return cls.from_lines(lines, command)

    @classmethod
    def from_lines(cls, lines: Iterable[str], command: str | None = None) -> SmtpResponse:
        code: int | None = None
        enhanced: EnhancedStatusCode | None = None
        parts: list[str] = []
        final_seen = False
        for line in lines:
            if final_seen:
                raise SmtpReplyError(f"text after the final reply line: {line!r}")
            line_code, is_final, content = parse_reply_line(line)
            if code is None:
                code = line_code
                enhanced, content = split_enhanced_code(content)
            elif line_code != code:
                raise SmtpReplyError(f"reply code changed within a reply: {line!r}")
            elif enhanced is not None and content.startswith(f"{enhanced} "):
                content = content[len(f"{enhanced} ") :]
            parts.append(content)
            final_seen = is_final
        if code is None:
            raise SmtpReplyError("empty reply")
        if not final_seen:
            raise SmtpReplyError("reply has no final line (`NNN text`)")
        return cls(code, enhanced, "\n".join(parts), command)

    @classmethod
    def with_code(
        cls, code: int, enhanced: tuple[int, int, int] | None, content: str
    ) -> SmtpResponse:
        """A reply we make up ourselves (expiry, DNS failure, ...)."""
        return cls(code, None if enhanced is None else EnhancedStatusCode(*enhanced), content)

    @property
    def single_line_content(self) -> str:
        """`content` with line breaks as spaces, as KumoMTA's JSON logs show it."""
        return self.content.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")

    def to_single_line(self) -> str:
        enhanced = "" if self.enhanced_code is None else f"{self.enhanced_code} "
        return f"{self.code} {enhanced}{self.single_line_content}"

    def is_transient(self) -> bool:
        return 400 <= self.code < 500

    def is_permanent(self) -> bool:
        return 500 <= self.code < 600

    def is_too_many_recipients(self) -> TooManyRecipients:
        """RFC 5321 4.5.3.1.10: 452 (or the historical 552) to RCPT means "too many
        recipients", to retry; so does enhanced 4.5.3 whatever the base code."""
        if self.command is None or not self.command.startswith("RCPT"):
            return TooManyRecipients.NO
        if self.code in (452, 552) and self.enhanced_code is None:
            return TooManyRecipients.MAYBE
        if self.enhanced_code == EnhancedStatusCode(4, 5, 3):
            return TooManyRecipients.YES
        return TooManyRecipients.NO

    def to_dict(self) -> dict[str, Any]:
        """The Avro `SmtpResponse` / KumoMTA JSON shape (content on one line)."""
        return {
            "code": self.code,
            "enhanced_code": None if self.enhanced_code is None else self.enhanced_code.to_dict(),
            "content": self.single_line_content,
            "command": self.command,
        }

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> SmtpResponse:
        enhanced = value.get("enhanced_code")
        return cls(
            int(value["code"]),
            None if enhanced is None else EnhancedStatusCode.from_dict(enhanced),
            str(value["content"]),
            value.get("command"),
        )


def parse_reply_line(line: str) -> tuple[int, bool, str]:
    """(code, is_final, text) of one reply line: three digits, then ` ` (final) or `-`."""
    if len(line) < 4 or line[3] not in " -" or not (line[:3].isascii() and line[:3].isdigit()):
        raise SmtpReplyError(f"malformed reply line {line!r}")
    return int(line[:3]), line[3] == " ", line[4:]


class ReplyKind(enum.Enum):
    DELIVERY = "Delivery"
    TRANSIENT_FAILURE = "TransientFailure"
    BOUNCE = "Bounce"


@dataclass(frozen=True)
class ReplyClassification:
    kind: ReplyKind
    too_many_recipients: TooManyRecipients
    closes_connection: bool


def classify_reply(response: SmtpResponse) -> ReplyClassification:
    """Delivery for 2xx; TransientFailure for 3xx, 4xx, 503 and "too many recipients" (yes or
    maybe: we have no bounce classifier to say otherwise); Bounce for other codes. A 421
    means the server is closing the connection."""
    too_many = response.is_too_many_recipients()
    if too_many is not TooManyRecipients.NO or response.code == 503 or 300 <= response.code < 500:
        # 503 and 3xx as final replies mean the session lost sync, not a verdict on the mail.
        kind = ReplyKind.TRANSIENT_FAILURE
    elif 200 <= response.code < 300:
        kind = ReplyKind.DELIVERY
    else:
        kind = ReplyKind.BOUNCE
    return ReplyClassification(kind, too_many, closes_connection=response.code == 421)
