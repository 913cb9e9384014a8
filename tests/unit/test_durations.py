"""Durations (humantime grammar, numbers as seconds) and rates (KumoMTA throttle specs)."""

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relaystream.core.domain.durations import (
    DurationError,
    Rate,
    RateError,
    duration_to_json,
    format_duration,
    parse_duration,
)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("20 minutes", 1200),
        ("10m", 600),
        ("1 hour", 3600),
        ("1h", 3600),
        ("30s", 30),
        ("2 days", 172800),
        ("1week", 604800),
        ("2h 37min", 9420),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("4.2s", 4.2),
        ("32ms", 0.032),
        ("1M", 2_630_016),
        ("1y", 31_557_600),
        ("0", 0),
        ("  5 s  ", 5),
        (600, 600),
        (0, 0),
        (1.5, 1.5),
    ],
)
def test_parse(value: str | int | float, seconds: float) -> None:
    assert parse_duration(value) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("600", "time unit needed"),
        ("", "empty"),
        ("   ", "empty"),
        ("h", "expected a number"),
        ("1h m", "expected a number"),
        ("10 parsecs", "unknown time unit"),
        ("-1s", "expected a number"),
        ("1.h", "digits expected"),
        ("1s,2s", "invalid character"),
        ("0.0000000001s", "too precise"),
        (-1, "negative"),
        (float("nan"), "finite"),
        (True, "expected a string or a number"),
        (None, "expected a string or a number"),
        ("99999999999999999999999y", "too large"),
    ],
)
def test_parse_errors(value: object, message: str) -> None:
    with pytest.raises(DurationError, match=message):
        parse_duration(value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (9420, "2h 37m"),
        (0.032, "32ms"),
        (604800, "7days"),
        (86400 + 1200, "1day 20m"),
        (31_557_600 + 2_630_016 * 2, "1year 2months"),
    ],
)
def test_format(seconds: float, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text


@given(st.integers(min_value=0, max_value=10**12))
def test_format_parses_back(micros: int) -> None:
    value = timedelta(microseconds=micros)
    assert parse_duration(format_duration(value)) == value


def test_duration_to_json_is_exact() -> None:
    assert duration_to_json(timedelta(minutes=20)) == 1200
    assert isinstance(duration_to_json(timedelta(minutes=20)), int)
    assert duration_to_json(timedelta(milliseconds=1500)) == 1.5


@pytest.mark.parametrize(
    ("text", "rate", "per_second", "formatted"),
    [
        ("100/s", Rate(100, 1), 100.0, "100/s"),
        ("1000/h", Rate(1000, 3600), 1000 / 3600, "1000/h"),
        ("10/m", Rate(10, 60), 10 / 60, "10/m"),
        ("100/hr", Rate(100, 3600), 100 / 3600, "100/h"),
        ("local:100/hr", Rate(100, 3600, force_local=True), 100 / 3600, "local:100/h"),
        ("local:100/123m", Rate(100, 7380, force_local=True), 100 / 7380, "local:100/7380s"),
        ("1_0,0/hour", Rate(100, 3600), 100 / 3600, "100/h"),
        ("50/day,max_burst=1", Rate(50, 86400, max_burst=1), 50 / 86400, "50/d,max_burst=1"),
    ],
)
def test_rates(text: str, rate: Rate, per_second: float, formatted: str) -> None:
    parsed = Rate.parse(text)
    assert parsed == rate
    assert parsed.per_second == pytest.approx(per_second)
    assert str(parsed) == formatted
    assert Rate.parse(str(parsed)) == parsed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("100/our", "unknown period"),
        ("three/hour", "invalid number"),
        ("100", "limit/period"),
        ("0/s", "greater than 0"),
        ("10/0s", "period must be greater than 0"),
        ("10/5", "missing period unit"),
    ],
)
def test_rate_errors(text: str, message: str) -> None:
    with pytest.raises(RateError, match=message):
        Rate.parse(text)
