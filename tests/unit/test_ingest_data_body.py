"""The DATA body reader: end detection across any chunking, dot-stuffing undone, limits."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relaystream.ingest.data_body import DataBody, DataVerdict

LINE_LIMIT = 1001


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
    body = DataBody(size_limit=0, line_limit=LINE_LIMIT)
    chunks = cut(on_the_wire(sent), points)
    ends = [body.feed(chunk) for chunk in chunks]
    assert ends == [False] * (len(chunks) - 1) + [True]
    assert body.verdict() is DataVerdict.ACCEPTABLE
    assert body.content() == b"".join(line + b"\r\n" for line in sent)


def test_an_empty_body_ends_at_the_first_dot_line() -> None:
    body = DataBody(size_limit=0, line_limit=LINE_LIMIT)
    assert body.feed(b".\r\n")
    assert body.content() == b""


def test_a_dot_inside_a_line_or_a_bare_newline_does_not_end_the_data() -> None:
    body = DataBody(size_limit=0, line_limit=LINE_LIMIT)
    assert not body.feed(b"a.\r\n")
    assert not body.feed(b"b\n.\r\n")
    assert body.feed(b".\r\n")
    assert body.content() == b"a.\r\nb\n.\r\n"


def test_a_line_over_the_limit_is_refused_after_the_end() -> None:
    body = DataBody(size_limit=0, line_limit=LINE_LIMIT)
    assert body.feed(b"x" * 999 + b"\r\n.\r\n")  # 1001 with its CRLF: at the limit
    assert body.verdict() is DataVerdict.ACCEPTABLE
    body = DataBody(size_limit=0, line_limit=LINE_LIMIT)
    assert body.feed(b"x" * 1000 + b"\r\n.\r\n")
    assert body.verdict() is DataVerdict.LINE_TOO_LONG


def test_data_over_the_size_limit_is_drained_without_being_kept() -> None:
    body = DataBody(size_limit=100, line_limit=LINE_LIMIT)
    assert not body.feed(b"y" * 98 + b"\r\n")  # exactly the limit: still fine
    assert body.feed(b".\r\n")
    assert body.verdict() is DataVerdict.ACCEPTABLE
    body = DataBody(size_limit=100, line_limit=LINE_LIMIT)
    for _ in range(1000):
        assert not body.feed(b"z" * 97 + b"\r\n")
    assert body._chunks == []  # nothing kept once over
    assert body.feed(b".\r\n")
    assert body.verdict() is DataVerdict.TOO_MUCH


def test_nothing_is_taken_after_the_end_or_read_before_it() -> None:
    body = DataBody(size_limit=0, line_limit=LINE_LIMIT)
    with pytest.raises(ValueError):
        body.content()
    body.feed(b".\r\n")
    with pytest.raises(ValueError):
        body.feed(b"more")
