"""The SMTP client's wire format, pure: replies read from received bytes, the DATA payload.

No I/O; smtp_client.py feeds it what the socket delivers and writes what it returns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

# RFC 5321 4.5.3.1.5 allows 512 octets per reply line; real servers send longer texts, so
# this only bounds what a broken or hostile peer can make us buffer.
MAX_REPLY_LINE_OCTETS = 8192
MAX_REPLY_LINES = 200

# Lone CR and lone LF become CRLF: a bare LF in DATA is what SMTP smuggling exploits.
_LINE_END = re.compile(rb"\r\n|\r|\n")
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
DATA_END = b".\r\n"


class MalformedReply(ValueError):
    """The peer sent something that is not an SMTP reply (or an over-long one)."""


@dataclass(frozen=True)
class Reply:
    """One complete reply: its code and the text of each line (code and separator removed)."""

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


def take_replies(buffer: bytearray) -> list[Reply]:
    """Remove the complete replies at the start of `buffer` and return them in order.

    A reply still arriving stays in the buffer. Raises MalformedReply for a line that is not
    `NNN[ -]text`, for a line or reply over the limits, and for a multi-line reply whose lines
    carry different codes.
    """
    replies: list[Reply] = []
    start = 0
    while True:
        reply, end = _one_reply(buffer, start)
        if reply is None:
            break
        replies.append(reply)
        start = end
    del buffer[:start]
    if buffer.find(b"\n") == -1 and len(buffer) > MAX_REPLY_LINE_OCTETS:
        raise MalformedReply(f"reply line longer than {MAX_REPLY_LINE_OCTETS} octets")
    return replies


def _one_reply(buffer: bytearray, start: int) -> tuple[Reply | None, int]:
    code: int | None = None
    lines: list[str] = []
    position = start
    while True:
        newline = buffer.find(b"\n", position)
        if newline == -1:
            return None, start
        line = bytes(buffer[position:newline]).rstrip(b"\r")
        position = newline + 1
        if len(line) > MAX_REPLY_LINE_OCTETS:
            raise MalformedReply(f"reply line longer than {MAX_REPLY_LINE_OCTETS} octets")
        line_code, final, text = _reply_line(line)
        if code is None:
            code = line_code
        elif line_code != code:
            raise MalformedReply(f"reply lines carry different codes: {code} and {line_code}")
        lines.append(text)
        if len(lines) > MAX_REPLY_LINES:
            raise MalformedReply(f"reply of more than {MAX_REPLY_LINES} lines")
        if final:
            return Reply(code, tuple(lines)), position


def _reply_line(line: bytes) -> tuple[int, bool, str]:
    """(code, is the last line, text) of one reply line without its line ending."""
    head = line[:3]
    separator = line[3:4]
    if len(head) != 3 or not head.isdigit() or separator not in (b"", b" ", b"-"):
        shown = line[:80].decode("ascii", "replace")
        raise MalformedReply(f"not an SMTP reply line: {shown!r}")
    text = line[4:].strip(b" \t").decode("utf-8", "replace")
    return int(head), separator != b"-", text


def extensions(ehlo: Reply) -> Mapping[str, str]:
    """The service extensions an EHLO reply advertises: keyword (upper case) to parameters."""
    offered: dict[str, str] = {}
    for line in ehlo.lines[1:]:
        keyword, _, parameters = line.partition(" ")
        if keyword:
            offered[keyword.upper()] = parameters
    return offered


def command(verb: bytes, argument: bytes = b"") -> bytes:
    """One command line; ValueError when the argument would smuggle in another line."""
    if _CONTROL.search(argument):
        raise ValueError(f"{verb.decode()} argument contains a control character")
    return verb + b" " + argument + b"\r\n" if argument else verb + b"\r\n"


def data_payload(content: bytes) -> tuple[bytes, bytes]:
    """What follows a 354: the content with CRLF line endings and leading dots doubled
    (RFC 5321 4.5.2), then the terminator (with the CRLF the content may lack).

    Two parts, so a body that needs no change is written without being copied.
    """
    crlf = content.count(b"\r\n")
    if content.count(b"\r") != crlf or content.count(b"\n") != crlf:
        content = _LINE_END.sub(b"\r\n", content)
    if b"\n." in content:
        content = content.replace(b"\n.", b"\n..")
    if content.startswith(b"."):
        content = b"." + content
    terminator = DATA_END if content.endswith(b"\r\n") else b"\r\n" + DATA_END
    return content, terminator
