"""The DATA body reader: end detection across any chunking, dot-stuffing undone, limits."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relaystream.core.runtime.settings import InvalidLineEndings
from relaystream.ingest.data_body import DataBody, DataVerdict
from relaystream.ingest.smtp_lines import (
    BARE_LF_COMMAND_REPLY,
    command_refusal,
    has_bare_cr_or_lf,
    normalize_line_endings,
)

LINE_LIMIT = 1001
DENY, ALLOW, FIX = InvalidLineEndings.DENY, InvalidLineEndings.ALLOW, InvalidLineEndings.FIX


def on_the_wire(lines: list[bytes]) -> bytes:
    """What a client sends after DATA: each line dot-stuffed, CRLF-ended, then `.CRLF`."""
    stuffed = [b"." + line if line.startswith(b".") else line for line in lines]
    return b"".join(line + b"\r\n" for line in stuffed) + b".\r\n"


def cut(wire: bytes, points: list[int]) -> list[bytes]:
    edges = sorted({0, len(wire), *(p % (len(wire) + 1) for p in points)})
    return [wire[a:b] for a, b in itertools.pairwise(edges)]


# Lines as a client may send them: any bytes but CRLF, often starting with dots.
lines = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.builds(lambda tail: b"." + tail, st.binary(max_size=10)),
        st.sampled_from([b"", b".", b"..", b"\r", b"\n", b"\r.\n"]),
    ).filter(lambda line: b"\r\n" not in line and not line.endswith(b"\r")),
    max_size=20,
)


@given(lines, st.lists(st.integers(min_value=0), max_size=8))
def test_the_body_is_the_lines_sent_however_the_bytes_arrive(
    sent: list[bytes], points: list[int]
) -> None:
    body = DataBody(size_limit=0, line_limit=LINE_LIMIT, line_endings=ALLOW)
    chunks = cut(on_the_wire(sent), points)
    ends = [body.feed(chunk) for chunk in chunks]
    assert ends == [False] * (len(chunks) - 1) + [True]
    assert body.verdict() is DataVerdict.ACCEPTABLE
    assert body.content() == b"".join(line + b"\r\n" for line in sent)


def test_an_empty_body_ends_at_the_first_dot_line() -> None:
    body = DataBody(size_limit=0, line_limit=LINE_LIMIT, line_endings=ALLOW)
    assert body.feed(b".\r\n")
    assert body.content() == b""


def test_a_dot_inside_a_line_or_a_bare_newline_does_not_end_the_data() -> None:
    body = DataBody(size_limit=0, line_limit=LINE_LIMIT, line_endings=ALLOW)
    assert not body.feed(b"a.\r\n")
    assert not body.feed(b"b\n.\r\n")
    assert body.feed(b".\r\n")
    assert body.content() == b"a.\r\nb\n.\r\n"


def test_a_line_over_the_limit_is_refused_after_the_end() -> None:
    body = DataBody(size_limit=0, line_limit=LINE_LIMIT, line_endings=ALLOW)
    assert body.feed(b"x" * 999 + b"\r\n.\r\n")  # 1001 with its CRLF: at the limit
    assert body.verdict() is DataVerdict.ACCEPTABLE
    body = DataBody(size_limit=0, line_limit=LINE_LIMIT, line_endings=ALLOW)
    assert body.feed(b"x" * 1000 + b"\r\n.\r\n")
    assert body.verdict() is DataVerdict.LINE_TOO_LONG


def test_data_over_the_size_limit_is_drained_without_being_kept() -> None:
    body = DataBody(size_limit=100, line_limit=LINE_LIMIT, line_endings=DENY)
    assert not body.feed(b"y" * 98 + b"\r\n")  # exactly the limit: still fine
    assert body.feed(b".\r\n")
    assert body.verdict() is DataVerdict.ACCEPTABLE
    body = DataBody(size_limit=100, line_limit=LINE_LIMIT, line_endings=DENY)
    for _ in range(1000):
        assert not body.feed(b"z" * 97 + b"\r\n")
    assert body._chunks == []  # nothing kept once over
    assert body.feed(b".\r\n")
    assert body.verdict() is DataVerdict.TOO_MUCH


def test_nothing_is_taken_after_the_end_or_read_before_it() -> None:
    body = DataBody(size_limit=0, line_limit=LINE_LIMIT, line_endings=ALLOW)
    with pytest.raises(ValueError):
        body.content()
    body.feed(b".\r\n")
    with pytest.raises(ValueError):
        body.feed(b"more")


# -- line endings (issue 16, finding 7) --------------------------------------------------------

# The SMTP smuggling sequences: each is an end of data to some server, none is to us.
SMUGGLING_ENDS = [b"\n.\r\n", b"\r\n.\n", b"\n.\n", b"\r.\r\n", b"\r\n.\r"]
SMUGGLED = b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nevil\r\n"


@pytest.mark.parametrize("mode", list(InvalidLineEndings))
@pytest.mark.parametrize("smuggling_end", SMUGGLING_ENDS)
@given(points=st.lists(st.integers(min_value=0), max_size=6))
def test_a_smuggling_sequence_never_ends_the_data(
    mode: InvalidLineEndings, smuggling_end: bytes, points: list[int]
) -> None:
    wire = b"Subject: s\r\n\r\nfirst" + smuggling_end + SMUGGLED + b".\r\n"
    body = DataBody(size_limit=0, line_limit=LINE_LIMIT, line_endings=mode)
    chunks = cut(wire, points)
    assert [body.feed(chunk) for chunk in chunks] == [False] * (len(chunks) - 1) + [True]
    if mode is DENY:
        assert body.verdict() is DataVerdict.INVALID_LINE_ENDINGS
    else:
        assert body.verdict() is DataVerdict.ACCEPTABLE
        assert SMUGGLED in body.content()  # one message, the smuggled commands inside it


def test_bare_line_endings_are_refused_kept_or_fixed() -> None:
    wire = b"a\nb\rc\r\n..d\n..e\r\n.\r\n"
    verdicts, contents = {}, {}
    for mode in InvalidLineEndings:
        body = DataBody(size_limit=0, line_limit=LINE_LIMIT, line_endings=mode)
        assert body.feed(wire)
        verdicts[mode], contents[mode] = body.verdict(), body.content()
    assert verdicts == {
        DENY: DataVerdict.INVALID_LINE_ENDINGS,
        ALLOW: DataVerdict.ACCEPTABLE,
        FIX: DataVerdict.ACCEPTABLE,
    }
    assert contents[ALLOW] == b"a\nb\rc\r\n.d\n..e\r\n"  # unstuffed after CRLF only
    assert contents[FIX] == b"a\r\nb\r\nc\r\n.d\r\n.e\r\n"


def test_a_bare_lf_ends_a_line_for_the_length_limit() -> None:
    body = DataBody(size_limit=0, line_limit=LINE_LIMIT, line_endings=ALLOW)
    assert body.feed((b"x" * 999 + b"\n") * 3 + b"\r\n.\r\n")
    assert body.verdict() is DataVerdict.ACCEPTABLE


@given(st.binary(max_size=60))
def test_normalized_data_has_no_bare_cr_or_lf_and_crlf_data_is_unchanged(data: bytes) -> None:
    normalized = normalize_line_endings(data)
    assert not has_bare_cr_or_lf(normalized)
    assert normalized.replace(b"\r\n", b"") == data.replace(b"\r\n", b"").replace(
        b"\r", b""
    ).replace(b"\n", b"")
    if not has_bare_cr_or_lf(data):
        assert normalized == data


@given(st.binary(max_size=40))
def test_bare_cr_or_lf_is_what_remains_once_crlf_pairs_are_gone(data: bytes) -> None:
    without_pairs = data.replace(b"\r\n", b"")
    assert has_bare_cr_or_lf(data) == (b"\r" in without_pairs or b"\n" in without_pairs)


@given(
    st.binary(max_size=40).filter(lambda b: b"\n" not in b and not b.endswith(b"\r")), st.booleans()
)
def test_command_lines_refused_for_controls_and_under_deny_for_bare_lf(
    text: bytes, forbid_bare_lf: bool
) -> None:
    has_control = any((byte < 0x20 and byte != 0x09) or byte == 0x7F for byte in text)
    refusal = command_refusal(text + b"\r\n", forbid_bare_lf=forbid_bare_lf)
    assert (refusal is not None) == has_control
    if refusal is not None:
        assert refusal.reply.startswith("501 5.5.2 Syntax error: ") and not refusal.closes_session
    bare = command_refusal(text + b"\n", forbid_bare_lf=forbid_bare_lf)
    if forbid_bare_lf:
        assert bare is not None and bare.closes_session and bare.reply == BARE_LF_COMMAND_REPLY
    else:
        assert bare == refusal


def test_command_refusals_name_the_byte() -> None:
    nul = command_refusal(b"EHLO a\x00b\r\n", forbid_bare_lf=True)
    cr = command_refusal(b"EHLO a\rb\r\n", forbid_bare_lf=True)
    assert nul is not None and nul.reply == "501 5.5.2 Syntax error: a NUL byte in command"
    assert cr is not None and cr.reply == "501 5.5.2 Syntax error: a bare <CR> in command"
    assert command_refusal(b"EHLO a\tb\r\n", forbid_bare_lf=True) is None
