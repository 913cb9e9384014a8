"""The message a reception handler works on: envelope, header fields and body, as the message
methods (namespaces/message.lua, dkim.lua) read and change them.

The header fields keep their raw bytes, so a message whose headers the handler did not touch
leaves exactly as it came; only fields the handler added are new bytes. When only the header
block is known (PolicyMessage.data is None), reading works and changing fails clearly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .headers import decode_header_value
from .host_error import HostError
from .types import PolicyMessage


@dataclass(frozen=True, slots=True)
class HeaderField:
    """One header field: `raw` is its bytes with folding and line endings; `name` is None for
    a line without a colon (kept as it came, invisible to lookups)."""

    raw: bytes
    name: str | None
    value: str  # unfolded, still encoded (RFC 2047 words undecoded), surrounding space removed

    @staticmethod
    def parse(raw: bytes) -> HeaderField:
        text = raw.decode("utf-8", errors="replace")
        name, colon, rest = text.partition(":")
        if not colon:
            return HeaderField(raw, None, "")
        unfolded = rest.replace("\r\n", "").replace("\n", "").replace("\r", "")
        return HeaderField(raw, name.strip(), unfolded.strip())

    @property
    def decoded(self) -> str:
        return decode_header_value(self.value)


def split_header_fields(block: bytes) -> list[HeaderField]:
    """The fields of a header block (without the blank line that ends it)."""
    fields: list[bytes] = []
    for line in block.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
    return [HeaderField.parse(raw) for raw in fields]


def split_message(data: bytes) -> tuple[list[HeaderField], bytes, bytes]:
    """(header fields, the blank line ending them, body). A message without a blank line is
    all header block and has no body."""
    fields, separator, body_start = _split_at_body(data)
    return fields, separator, data[body_start:]


def _split_at_body(data: bytes) -> tuple[list[HeaderField], bytes, int]:
    """(header fields, the blank line ending them, where the body starts)."""
    position = 0
    while position < len(data):
        end = data.find(b"\n", position)
        line_end = len(data) if end == -1 else end + 1
        line = data[position:line_end]
        if line in (b"\r\n", b"\n"):
            return split_header_fields(data[:position]), line, line_end
        position = line_end
    return split_header_fields(data), b"", len(data)


# The most header bytes one handler call may add to a message.
MAX_ADDED_HEADER_BYTES = 1024 * 1024


class MessageState:
    """One message while its handler runs. `sender_changed`, `recipient_changed` and
    `data_changed` say what PolicyAccepted must carry back.

    The header block is parsed on first use, and the body is never copied until a change
    needs the message rebuilt: most handlers read a header or two, or nothing."""

    __slots__ = (
        "_added_bytes",
        "_body_start",
        "_fields",
        "_message",
        "_separator",
        "_source",
        "data_changed",
        "id",
        "recipient",
        "recipient_changed",
        "sender",
        "sender_changed",
        "whole",
    )

    def __init__(self, message: PolicyMessage) -> None:
        # Per message, so kept to plain assignments: the bytes are looked at on first use.
        self.id = message.id
        self.sender = message.sender
        self.recipient = message.recipient
        self.sender_changed = False
        self.recipient_changed = False
        self.data_changed = False
        self.whole = message.data is not None
        self._message = message
        self._source: bytes | None = message.data
        self._fields: list[HeaderField] | None = None
        self._separator = b"\r\n"
        self._body_start = 0
        self._added_bytes = 0

    def _bytes(self) -> bytes:
        if self._source is None:
            # Only the header block counts when that is all the caller has.
            self._source = self._message.headers.encode()
        return self._source

    @property
    def fields(self) -> list[HeaderField]:
        if self._fields is None:
            self._fields, separator, self._body_start = _split_at_body(self._bytes())
            if self.whole:
                self._separator = separator
        return self._fields

    # Reading.

    def values(self, name: str) -> list[str]:
        """Decoded values of the fields named `name` (any case), in order."""
        wanted = name.lower()
        return [f.decoded for f in self.fields if f.name is not None and f.name.lower() == wanted]

    def named_fields(self) -> list[tuple[str, str]]:
        return [(f.name, f.decoded) for f in self.fields if f.name is not None]

    def require_whole(self, method: str) -> None:
        if not self.whole:
            raise HostError(
                f"msg:{method}: only the message's headers are available here, not the whole "
                "message; call it in smtp_server_message_received or http_message_generated "
                "where the message is received"
            )

    def data(self, method: str) -> bytes:
        self.require_whole(method)
        if self._fields is None:
            return self._bytes()  # as received, or as set_data left it
        header_block = b"".join(f.raw for f in self._fields)
        return header_block + self._separator + self._bytes()[self._body_start :]

    @property
    def line_ending(self) -> bytes:
        """The header block's line ending, for the fields a handler adds."""
        for field in self.fields:
            ending_lf = field.raw.endswith(b"\n") and not field.raw.endswith(b"\r\n")
            return b"\n" if ending_lf else b"\r\n"
        return b"\r\n"

    # Changing.

    def set_data(self, data: bytes) -> None:
        self._source = data
        self._fields = None
        self.whole = True
        self.data_changed = True

    def field_bytes(self, name: str, value: str) -> bytes:
        return f"{name}: {value}".encode() + self.line_ending

    def add_field(self, method: str, raw: bytes, *, first: bool) -> None:
        self.require_whole(method)
        # Python's copies are outside the Lua memory limit: one Lua string appended in a loop
        # would otherwise grow the process by hundreds of megabytes within one call.
        self._added_bytes += len(raw)
        if self._added_bytes > MAX_ADDED_HEADER_BYTES:
            raise HostError(
                f"msg:{method}: the handler added more than {MAX_ADDED_HEADER_BYTES} bytes of "
                "header fields"
            )
        field = HeaderField.parse(raw)
        self._fields = [field, *self.fields] if first else [*self.fields, field]
        self.data_changed = True

    def remove_fields(self, method: str, doomed: Callable[[str], bool]) -> None:
        """Removes every named field for which `doomed(lowercased name)` is true."""
        kept = [f for f in self.fields if f.name is None or not doomed(f.name.lower())]
        if len(kept) != len(self.fields):
            self.require_whole(method)
            self._fields = kept
            self.data_changed = True
