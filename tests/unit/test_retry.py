"""Backoff, jitter and expiry after transient failures (KumoMTA's scheduled queue rules)."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relaystream.core.domain.queue_config import QueueConfig
from relaystream.core.domain.retry import (
    Expire,
    Requeue,
    apply_jitter,
    decide_after_transient_failure,
    jitter_magnitude,
    next_retry_delay,
    retry_schedule,
)
from relaystream.core.domain.smtp_reply import EnhancedStatusCode

MINUTES_20 = timedelta(minutes=20)
CREATED = datetime(2026, 1, 1, tzinfo=UTC)


def test_defaults_double_from_twenty_minutes() -> None:
    delays = [next_retry_delay(n, MINUTES_20, None).total_seconds() for n in range(5)]
    assert delays == [1200, 2400, 4800, 9600, 19200]


def test_cap_applies() -> None:
    cap = timedelta(hours=1)
    delays = [next_retry_delay(n, MINUTES_20, cap).total_seconds() for n in range(4)]
    assert delays == [1200, 2400, 3600, 3600]


def test_cap_equal_to_interval_disables_backoff() -> None:
    assert next_retry_delay(10, MINUTES_20, MINUTES_20) == MINUTES_20


def test_sub_second_intervals_count_in_whole_seconds() -> None:
    assert next_retry_delay(0, timedelta(seconds=1.9), None) == timedelta(seconds=1)


def test_huge_attempt_counts_do_not_overflow() -> None:
    assert next_retry_delay(60000, MINUTES_20, None) <= timedelta.max
    assert next_retry_delay(60000, MINUTES_20, timedelta(days=1)) == timedelta(days=1)


def test_negative_attempts_are_refused() -> None:
    with pytest.raises(ValueError):
        next_retry_delay(-1, MINUTES_20, None)


@given(
    interval=st.integers(0, 10**6),
    cap=st.none() | st.integers(0, 10**7),
    attempts=st.integers(0, 80),
)
def test_delays_are_monotone_up_to_the_cap(interval: int, cap: int | None, attempts: int) -> None:
    cap_delta = None if cap is None else timedelta(seconds=cap)
    this = next_retry_delay(attempts, timedelta(seconds=interval), cap_delta)
    following = next_retry_delay(attempts + 1, timedelta(seconds=interval), cap_delta)
    assert this <= following
    if cap_delta is not None:
        assert following <= cap_delta


def test_jitter_magnitude() -> None:
    assert jitter_magnitude(MINUTES_20) == 60.0
    assert jitter_magnitude(timedelta(minutes=10)) == 30.0
    assert jitter_magnitude(timedelta(hours=5)) == 60.0


@pytest.mark.parametrize(
    ("random_value", "seconds"),
    [(0.0, 1200 - 30), (0.5, 1200), (0.999, 1200 + 29), (0.26, 1200 - 14)],
)
def test_jitter_truncates_toward_zero(random_value: float, seconds: int) -> None:
    assert apply_jitter(MINUTES_20, MINUTES_20, lambda: random_value) == timedelta(seconds=seconds)


@given(st.floats(min_value=0.0, max_value=0.999999), st.integers(0, 20))
def test_jitter_stays_within_half_the_magnitude(random_value: float, attempts: int) -> None:
    base = next_retry_delay(attempts, MINUTES_20, None)
    jittered = apply_jitter(base, MINUTES_20, lambda: random_value)
    assert abs((jittered - base).total_seconds()) <= 30


def test_requeue_after_first_failure() -> None:
    now = CREATED + timedelta(seconds=5)
    decision = decide_after_transient_failure(
        attempts=0, created_at=CREATED, now=now, config=QueueConfig(), random=lambda: 0.5
    )
    assert decision == Requeue(now + MINUTES_20, 1, MINUTES_20)


def test_expiry_when_next_attempt_would_exceed_max_age() -> None:
    config = QueueConfig(max_age=timedelta(hours=1))
    now = CREATED + timedelta(minutes=50)
    decision = decide_after_transient_failure(
        attempts=1, created_at=CREATED, now=now, config=config, random=lambda: 0.5
    )
    assert isinstance(decision, Expire)
    assert decision.attempts == 2
    assert decision.response.code == 551
    assert decision.response.enhanced_code == EnhancedStatusCode(5, 4, 7)
    assert decision.response.content == (
        "Next delivery time would be 1h 30m after creation, which exceeds max_age=1h"
    )


def test_exactly_max_age_still_requeues() -> None:
    config = QueueConfig(max_age=timedelta(minutes=20))
    decision = decide_after_transient_failure(
        attempts=0, created_at=CREATED, now=CREATED, config=config, random=lambda: 0.5
    )
    assert isinstance(decision, Requeue)


def test_default_schedule() -> None:
    delays = [d.total_seconds() for d in retry_schedule(QueueConfig())]
    assert delays == [1200, 2400, 4800, 9600, 19200, 38400, 76800, 153600]
    assert sum(delays) <= timedelta(days=7).total_seconds()


def test_schedule_with_cap() -> None:
    config = QueueConfig(max_retry_interval=timedelta(hours=1), max_age=timedelta(hours=4))
    delays = [d.total_seconds() for d in retry_schedule(config)]
    assert delays == [1200, 2400, 3600, 3600, 3600]


def test_schedule_with_zero_interval_is_bounded() -> None:
    assert len(retry_schedule(QueueConfig(retry_interval=timedelta(0)), limit=50)) == 50


@given(st.integers(1, 10**5), st.none() | st.integers(1, 10**6), st.integers(0, 10**7))
def test_schedule_never_exceeds_max_age(interval: int, cap: int | None, max_age: int) -> None:
    config = QueueConfig(
        retry_interval=timedelta(seconds=interval),
        max_retry_interval=None if cap is None else timedelta(seconds=cap),
        max_age=timedelta(seconds=max_age),
    )
    delays = retry_schedule(config)
    assert sum(delays, timedelta(0)) <= config.max_age
    assert delays == sorted(delays)
