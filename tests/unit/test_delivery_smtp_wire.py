"""The SMTP client's wire format: replies parsed from any split of the bytes, DATA payloads."""

from __future__ import annotations

import pytest
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from hypothesis import given
from hypothesis import strategies as st

from relaystream.delivery.smtp_wire import (
    MAX_REPLY_LINE_OCTETS,
    MAX_REPLY_LINES,
    MalformedReply,
    Reply,
    command,
    data_payload,
    extensions,
    take_replies,
)

reply_text = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")), max_size=40
).map(str.strip)
replies = st.builds(
    Reply,
    code=st.integers(200, 599),
    lines=st.lists(reply_text, min_size=1, max_size=4).map(tuple),
)


def wire(reply: Reply) -> bytes:
    *rest, last = reply.lines
    head = b"".join(f"{reply.code}-{line}\r\n".encode() for line in rest)
    return head + f"{reply.code} {last}\r\n".encode()


@given(st.lists(replies, max_size=6), st.data())
def test_replies_come_out_whole_and_in_order_however_the_bytes_arrive(
    sent: list[Reply], data: st.DataObject
) -> None:
    stream = b"".join(wire(reply) for reply in sent)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    buffer = bytearray()
    received: list[Reply] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        buffer += stream[start:end]
        received.extend(take_replies(buffer))
    assert received == sent
    assert buffer == b""


def test_a_partial_reply_waits_in_the_buffer() -> None:
    buffer = bytearray(b"250-first\r\n250-second\r\n250 la")
    assert take_replies(buffer) == []
    buffer += b"st\r\n354 go\r\n"
    assert take_replies(buffer) == [
        Reply(250, ("first", "second", "last")),
        Reply(354, ("go",)),
    ]


def test_a_bare_code_and_a_bare_lf_are_accepted() -> None:
    assert take_replies(bytearray(b"250\n221 bye\n")) == [Reply(250, ("",)), Reply(221, ("bye",))]


@pytest.mark.parametrize(
    ("received", "complaint"),
    [
        (b"hello there\r\n", "not an SMTP reply line"),
        (b"25 short\r\n", "not an SMTP reply line"),
        (b"250_underscore\r\n", "not an SMTP reply line"),
        (b"250-one\r\n550 two\r\n", "different codes"),
        (b"250 " + b"x" * MAX_REPLY_LINE_OCTETS + b"\r\n", "longer than"),
        (b"250-" + b"x" * MAX_REPLY_LINE_OCTETS, "longer than"),
        (b"250-x\r\n" * (MAX_REPLY_LINES + 1), "more than"),
    ],
)
def test_what_is_not_a_reply_is_refused(received: bytes, complaint: str) -> None:
    with pytest.raises(MalformedReply, match=complaint):
        take_replies(bytearray(received))


def test_extensions_are_the_keywords_after_the_greeting_line() -> None:
    ehlo = Reply(250, ("mx.example greets you", "PIPELINING", "size 1000", "8BITMIME", ""))
    assert extensions(ehlo) == {"PIPELINING": "", "SIZE": "1000", "8BITMIME": ""}


def test_a_command_argument_cannot_smuggle_a_second_command() -> None:
    assert command(b"MAIL", b"FROM:<a@b.example>") == b"MAIL FROM:<a@b.example>\r\n"
    assert command(b"RSET") == b"RSET\r\n"
    with pytest.raises(ValueError, match="control character"):
        command(b"RCPT", b"TO:<a@b.example>\r\nDATA")


content = st.lists(
    st.sampled_from([b"a", b"text ", b".", b"..", b"\r", b"\n", b"\r\n", b"\r\n.", b"\xc3\xa9"]),
    max_size=30,
).map(b"".join)


@given(content)
def test_the_payload_is_what_rfc_5321_requires(body: bytes) -> None:
    """Same bytes as aiosmtplib's DATA: CRLF line endings, leading dots doubled, then
    the terminator after a final CRLF."""
    expected = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(body)) + b".\r\n"
    assert b"".join(data_payload(body)) == expected


def test_a_body_that_needs_no_change_is_not_copied() -> None:
    body = b"Subject: x\r\n\r\nhello\r\n"
    text, terminator = data_payload(body)
    assert text is body and terminator == b".\r\n"
