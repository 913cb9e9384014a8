"""The SMTP DATA body (RFC 5321 section 4.5.2), read in chunks rather than line by line.

aiosmtpd reads DATA with one `readuntil(CRLF)`, a log call and a few list operations per line:
about 150 awaits for a 10 KB message, a third of the ingest service's CPU under load. The
listener instead reads up to each `.CRLF` (the only place the end can be) and hands the bytes
here; this decides whether the end was reached and, once it was, undoes the dot-stuffing and
judges the size, line-ending and line-length limits with whole-buffer operations.

The end is only ever CRLF.CRLF: a bare LF or CR never ends the data, whatever the
`InvalidLineEndings` setting says about keeping, fixing or refusing it (smtp_lines.py).

Pure: no I/O. `smtp_server.IngestSMTP.smtp_DATA` does the reading.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from ..core.runtime.settings import InvalidLineEndings
from .smtp_lines import CRLF, has_bare_cr_or_lf, normalize_line_endings

END = b".\r\n"  # after a CRLF, or as the first line: the end of the data
_END_AFTER_LINE = b"\r\n.\r\n"


class DataVerdict(Enum):
    ACCEPTABLE = "acceptable"
    TOO_MUCH = "too much data"  # 552 5.3.4
    INVALID_LINE_ENDINGS = "bare LF or CR"  # 552 5.6.0 (InvalidLineEndings.DENY)
    LINE_TOO_LONG = "line too long"  # 500 5.5.2


@dataclass
class DataBody:
    """The bytes of one DATA phase as they arrive, from just after the DATA command's CRLF.

    `size_limit` bounds the data (as sent, terminator excluded; 0 = no limit); past it the
    bytes are dropped as they come, so memory stays bounded while the rest is drained.
    `line_limit` bounds each line, CRLF included (a bare LF ends a line for this count).
    `line_endings` says what a bare LF or CR does: refuse the data, keep it, or make it CRLF.
    """

    size_limit: int
    line_limit: int
    line_endings: InvalidLineEndings
    complete: bool = field(default=False, init=False)
    _chunks: list[bytes] = field(default_factory=list, init=False, repr=False)
    _size: int = field(default=0, init=False)
    # The last bytes seen, enough to recognise the end across chunks.
    _tail: bytes = field(default=b"", init=False, repr=False)
    # Once complete: the data as sent, terminator excluded.
    _raw: bytes = field(default=b"", init=False, repr=False)

    def feed(self, chunk: bytes) -> bool:
        """Adds bytes (never past the end); True once the terminating `.CRLF` arrived."""
        if self.complete:
            raise ValueError("the data already ended")
        window = self._tail + chunk
        self._size += len(chunk)
        if self._too_much(self._size - len(END)):
            self._chunks.clear()  # keep draining, keep nothing
        else:
            self._chunks.append(chunk)
        self._tail = window[-len(_END_AFTER_LINE) :]
        # The window holds everything sent so far only while that is shorter than its tail:
        # `window == END` is the empty body, never a later `.CRLF`.
        self.complete = window.endswith(_END_AFTER_LINE) or window == END
        if self.complete and self._chunks:
            self._raw = b"".join(self._chunks)[: -len(END)]
            self._chunks.clear()
        return self.complete

    def verdict(self) -> DataVerdict:
        self._require_complete()
        if self._too_much(self._size - len(END)):
            return DataVerdict.TOO_MUCH
        if self.line_endings is InvalidLineEndings.DENY and has_bare_cr_or_lf(self._raw):
            return DataVerdict.INVALID_LINE_ENDINGS
        # Split at LF: the CR of a CRLF stands in for the LF dropped by the split.
        longest = max(map(len, self._as_kept().split(b"\n"))) + 1
        return DataVerdict.LINE_TOO_LONG if longest > self.line_limit else DataVerdict.ACCEPTABLE

    def content(self) -> bytes:
        """The message as sent, dot-stuffing undone: every line that starts with a dot loses
        that dot (the sender added it). Lines keep their CRLF. Under FIX, bare LFs and CRs
        become CRLF first, so the lines they end are unstuffed like any other."""
        self._require_complete()
        unstuffed = self._as_kept().replace(b"\r\n.", CRLF)
        return unstuffed[1:] if unstuffed.startswith(b".") else unstuffed

    def _as_kept(self) -> bytes:
        if self.line_endings is InvalidLineEndings.FIX:
            return normalize_line_endings(self._raw)
        return self._raw

    def _too_much(self, size: int) -> bool:
        return bool(self.size_limit) and size > self.size_limit

    def _require_complete(self) -> None:
        if not self.complete:
            raise ValueError("the data has not ended yet")
