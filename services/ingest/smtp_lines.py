"""SMTP line endings and command bytes (RFC 5321 section 2.3.8: lines end with CRLF only).

A bare LF or CR is how SMTP smuggling hides a second message inside one DATA: a server that
ends DATA at `LF.LF` while the next hop ends it only at `CRLF.CRLF` sees two messages where
that hop saw one. Our DATA ends only at CRLF.CRLF (data_body.py); what a bare LF or CR means
otherwise is the `InvalidLineEndings` setting. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CRLF = b"\r\n"

# KumoMTA's reply when DATA holds a bare LF or CR under "Deny" (kumod smtp_server.rs).
INVALID_DATA_LINE_ENDINGS_REPLY = "552 5.6.0 message data must use CRLF for line endings"
# Postfix's reply (smtpd_forbid_bare_newline=reject, default code 550) to a command line
# ending in a bare LF; the session is then closed, as Postfix does.
BARE_LF_COMMAND_REPLY = "550 5.5.2 Error: bare <LF> received, lines must end with <CR><LF>"

# Control characters no command holds (HT is allowed as white space); LF only ends a line.
_COMMAND_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass(frozen=True)
class CommandRefusal:
    """How to answer a command line that is refused before it is parsed."""

    reply: str
    closes_session: bool


def has_bare_cr_or_lf(data: bytes) -> bool:
    """Whether `data` holds a CR or LF that is not part of a CRLF."""
    pairs = data.count(CRLF)
    return data.count(b"\n") != pairs or data.count(b"\r") != pairs


def normalize_line_endings(data: bytes) -> bytes:
    """Every bare LF and bare CR as CRLF (CRLF stays)."""
    return data.replace(CRLF, b"\n").replace(b"\r", b"\n").replace(b"\n", CRLF)


def command_refusal(line: bytes, *, forbid_bare_lf: bool) -> CommandRefusal | None:
    """The answer refusing a command `line` as read (up to and including its LF), or None.

    A line ending in a bare LF is refused when `forbid_bare_lf` (else it is read as if it
    ended in CRLF, as aiosmtpd does); a NUL or other control character, a bare CR included,
    is refused always: no command has one, and it would reach logs and trace headers.
    """
    if line.endswith(CRLF):
        text = line[:-2]
    elif line.endswith(b"\n"):
        if forbid_bare_lf:
            return CommandRefusal(BARE_LF_COMMAND_REPLY, closes_session=True)
        text = line[:-1]
    else:
        text = line  # the end of the stream; aiosmtpd will not read it as a command
    control = _COMMAND_CONTROL.search(text)
    if control is None:
        return None
    byte = control.group()[0]
    what = {0x00: "a NUL byte", 0x0D: "a bare <CR>"}.get(byte, f"control character 0x{byte:02x}")
    return CommandRefusal(f"501 5.5.2 Syntax error: {what} in command", closes_session=False)
