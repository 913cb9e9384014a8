"""How the bench reads Postfix's smtp-sink: its `-c` status line, however the pipe splits it."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from relaystream_devkit.bench_load import SmtpSinkCounter

# What `smtp-sink -c` wrote for 2 sessions of 5 and 3 messages (taken from a real run).
EVENTS = [(1, 0, 0), (1, 0, 1), (1, 0, 2), (1, 0, 3), (1, 0, 4), (1, 0, 5)]
EVENTS += [(1, 1, 5), (2, 1, 5), (2, 1, 6), (2, 1, 7), (2, 1, 8), (2, 2, 8)]
STATUS = b"".join(f"sess={s} quit={q} mesg={m}\r".encode() for s, q, m in EVENTS)


@given(st.lists(st.integers(min_value=0, max_value=len(STATUS)), max_size=20))
def test_the_count_is_the_last_status_line_whatever_the_chunks(cuts: list[int]) -> None:
    counter = SmtpSinkCounter()
    bounds = [0, *sorted(cuts), len(STATUS)]
    for start, end in itertools.pairwise(bounds):
        counter.feed(STATUS[start:end])
    assert counter.messages == 8


def test_feed_says_when_a_message_arrived() -> None:
    counter = SmtpSinkCounter()
    assert not counter.feed(b"sess=1 quit=0 mesg=0\r")
    assert not counter.feed(b"sess=1 quit=0 mes")  # a line cut short counts once complete
    assert counter.feed(b"g=1\r")
    assert not counter.feed(b"sess=1 quit=1 mesg=1\r")  # a session ending is no message
    assert counter.messages == 1
