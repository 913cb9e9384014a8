"""`relaystream dev`'s restart back-off and how it reports a service's end."""

from __future__ import annotations

import signal

from hypothesis import given
from hypothesis import strategies as st

from relaystream_devkit.dev import RestartBackoff, describe_exit

# How long each run lasted before the service exited again.
run_lengths = st.lists(st.floats(min_value=0, max_value=600), min_size=1, max_size=30)


def test_crashing_at_once_doubles_the_wait_from_1_s_to_30_s() -> None:
    backoff = RestartBackoff()
    delays = [backoff.delay_after_exit(ran_for_s=0.2) for _ in range(8)]
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]


def test_a_run_that_stayed_up_resets_the_wait() -> None:
    backoff = RestartBackoff()
    for _ in range(5):
        backoff.delay_after_exit(ran_for_s=1)
    assert backoff.delay_after_exit(ran_for_s=backoff.stable_s) == backoff.first_s
    assert backoff.delay_after_exit(ran_for_s=1) == 2 * backoff.first_s


@given(run_lengths)
def test_the_wait_stays_within_its_bounds_and_grows_only_while_crashing(runs: list[float]) -> None:
    backoff = RestartBackoff()
    previous = None
    for ran_for in runs:
        delay = backoff.delay_after_exit(ran_for)
        assert backoff.first_s <= delay <= backoff.longest_s
        if ran_for >= backoff.stable_s or previous is None:
            assert delay == backoff.first_s
        else:
            assert delay == min(previous * 2, backoff.longest_s)
        previous = delay


def test_an_exit_says_its_status_or_its_signal() -> None:
    assert describe_exit(1) == "exited with status 1"
    assert describe_exit(0) == "exited with status 0"
    assert describe_exit(-signal.SIGKILL) == "was killed by SIGKILL"
    assert describe_exit(-signal.SIGSEGV) == "was killed by SIGSEGV"
