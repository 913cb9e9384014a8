"""Durations and rates as KumoMTA's configuration accepts them.

Durations (queue config fields) are numbers of seconds or human strings in the grammar of the
Rust `humantime` crate that KumoMTA uses: one or more `<number><unit>` spans (`"1h 30m"`,
`"20 minutes"`, `"1.5h"`), whitespace allowed between and inside spans, and the bare string
`"0"`. A bare number in a string (`"600"`) is an error there, as in KumoMTA.

Rates (`max_message_rate`) are KumoMTA throttle specs: `limit/period` with an optional
period multiplier (`"100/s"`, `"1_000/h"`, `"10/5m"`), optional `local:` prefix and
`,max_burst=N` suffix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction

NANOS_PER_SECOND = 1_000_000_000

# Unit names and their length in nanoseconds (months and years as humantime defines them).
_UNIT_NANOS: dict[str, int] = {}
for _names, _nanos in (
    (("nanos", "nsec", "ns"), 1),
    (("usec", "us", "µs"), 1_000),
    (("millis", "msec", "ms"), 1_000_000),
    (("seconds", "second", "secs", "sec", "s"), NANOS_PER_SECOND),
    (("minutes", "minute", "min", "mins", "m"), 60 * NANOS_PER_SECOND),
    (("hours", "hour", "hr", "hrs", "h"), 3_600 * NANOS_PER_SECOND),
    (("days", "day", "d"), 86_400 * NANOS_PER_SECOND),
    (("weeks", "week", "wk", "wks", "w"), 7 * 86_400 * NANOS_PER_SECOND),
    (("months", "month", "M"), 2_630_016 * NANOS_PER_SECOND),
    (("years", "year", "yr", "yrs", "y"), 31_557_600 * NANOS_PER_SECOND),
):
    for _name in _names:
        _UNIT_NANOS[_name] = _nanos

_MAX_SECONDS = 2**64 - 1  # humantime works in u64 seconds
_TIMEDELTA_MAX_SECONDS = timedelta.max.days * 86_400


class DurationError(ValueError):
    """A value that is not a duration."""


class RateError(ValueError):
    """A value that is not a rate (`limit/period`)."""


def parse_duration(value: object) -> timedelta:
    """A duration from a number of seconds (int or float, >= 0) or a human string."""
    if isinstance(value, bool):
        raise DurationError(f"invalid duration {value!r}: expected a string or a number")
    if isinstance(value, int):
        if value < 0:
            raise DurationError(f"invalid duration {value!r}: must not be negative")
        return _timedelta_from_nanos(value * NANOS_PER_SECOND, value)
    if isinstance(value, float):
        if not math.isfinite(value) or value < 0:
            raise DurationError(f"invalid duration {value!r}: must be a finite number >= 0")
        return _timedelta_from_nanos(round(value * NANOS_PER_SECOND), value)
    if isinstance(value, str):
        return _timedelta_from_nanos(_parse_human_nanos(value), value)
    raise DurationError(f"invalid duration {value!r}: expected a string or a number")


def _timedelta_from_nanos(nanos: int, original: object) -> timedelta:
    if nanos // NANOS_PER_SECOND > _TIMEDELTA_MAX_SECONDS:
        raise DurationError(f"invalid duration {original!r}: too large")
    # timedelta holds microseconds; finer parts are dropped.
    return timedelta(microseconds=nanos // 1_000)


def _parse_human_nanos(text: str) -> int:
    if text == "0":
        return 0
    total = 0
    position = 0
    length = len(text)
    spans = 0
    while True:
        while position < length and text[position].isspace():
            position += 1
        if position >= length:
            break
        number, position = _read_number(text, position)
        unit_start = position
        while position < length and (
            (text[position].isascii() and text[position].isalpha()) or text[position] == "µ"
        ):
            position += 1
        unit = text[unit_start:position]
        if not unit:
            if position < length and not text[position].isspace():
                raise DurationError(f"invalid duration {text!r}: invalid character at {position}")
            raise DurationError(
                f"invalid duration {text!r}: time unit needed, for example {number}sec"
            )
        if unit not in _UNIT_NANOS:
            raise DurationError(f"invalid duration {text!r}: unknown time unit {unit!r}")
        unit_nanos = _UNIT_NANOS[unit]
        span = number * unit_nanos
        # humantime computes fractions of an hour or more in whole seconds, smaller units in
        # nanoseconds; a fraction that does not land on that grain is an error.
        grain = NANOS_PER_SECOND if unit_nanos >= _UNIT_NANOS["h"] else 1
        if (span / grain).denominator != 1:
            raise DurationError(f"invalid duration {text!r}: fraction too precise for {unit!r}")
        total += int(span)
        spans += 1
        if total // NANOS_PER_SECOND > _MAX_SECONDS:
            raise DurationError(f"invalid duration {text!r}: too large")
        if position < length and not text[position].isspace() and not text[position].isdigit():
            raise DurationError(f"invalid duration {text!r}: invalid character at {position}")
    if spans == 0:
        raise DurationError(f"invalid duration {text!r}: empty")
    return total


def _read_number(text: str, position: int) -> tuple[Fraction, int]:
    """Digits (whitespace between them is ignored, as humantime does), optional fraction."""
    length = len(text)
    if not text[position].isdigit() or not text[position].isascii():
        raise DurationError(f"invalid duration {text!r}: expected a number at {position}")
    digits = ""
    while position < length and (
        (text[position].isascii() and text[position].isdigit()) or text[position].isspace()
    ):
        if not text[position].isspace():
            digits += text[position]
        position += 1
    number = Fraction(int(digits))
    if position < length and text[position] == ".":
        position += 1
        fraction_digits = ""
        while position < length and (
            (text[position].isascii() and text[position].isdigit()) or text[position].isspace()
        ):
            if not text[position].isspace():
                fraction_digits += text[position]
            position += 1
        if not fraction_digits:
            raise DurationError(f"invalid duration {text!r}: digits expected after '.'")
        number += Fraction(int(fraction_digits), 10 ** len(fraction_digits))
    return number, position


def format_duration(value: timedelta) -> str:
    """A duration in humantime's display form (`"7days"`, `"2h 37m"`, `"1day 20m 3s 5ms"`)."""
    micros = value // timedelta(microseconds=1)
    if micros < 0:
        raise DurationError(f"cannot format a negative duration {value!r}")
    if micros == 0:
        return "0s"
    seconds, subsec_micros = divmod(micros, 1_000_000)
    years, rest = divmod(seconds, 31_557_600)
    months, rest = divmod(rest, 2_630_016)
    days, rest = divmod(rest, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    millis, us = divmod(subsec_micros, 1_000)
    parts: list[str] = []
    for amount, name in ((years, "year"), (months, "month"), (days, "day")):
        if amount:
            parts.append(f"{amount}{name}{'s' if amount > 1 else ''}")
    for amount, suffix in ((hours, "h"), (minutes, "m"), (secs, "s"), (millis, "ms"), (us, "us")):
        if amount:
            parts.append(f"{amount}{suffix}")
    return " ".join(parts)


def duration_to_json(value: timedelta) -> int | float:
    """Seconds as a JSON number: an int when whole, so round trips stay exact."""
    micros = value // timedelta(microseconds=1)
    if micros % 1_000_000 == 0:
        return micros // 1_000_000
    return micros / 1_000_000


_PERIOD_SECONDS = {
    "h": 3600, "hr": 3600, "hour": 3600,
    "m": 60, "min": 60, "minute": 60,
    "s": 1, "sec": 1, "second": 1,
    "d": 86400, "day": 86400,
}  # fmt: skip


@dataclass(frozen=True)
class Rate:
    """At most `limit` events per `period_seconds` (a KumoMTA throttle spec)."""

    limit: int
    period_seconds: int
    max_burst: int | None = None
    force_local: bool = False

    @property
    def per_second(self) -> float:
        return self.limit / self.period_seconds

    @classmethod
    def parse(cls, text: str) -> Rate:
        spec = text
        force_local = spec.startswith("local:")
        if force_local:
            spec = spec[len("local:") :]
        max_burst: int | None = None
        spec, burst_sep, burst_text = spec.partition(",max_burst=")
        if burst_sep:
            max_burst = _separated_number(burst_text, text)
        limit_text, slash, period_text = spec.partition("/")
        if not slash:
            raise RateError(f"invalid rate {text!r}: expected 'limit/period'")
        scale_digits = ""
        while period_text[:1].isascii() and period_text[:1].isdigit():
            scale_digits, period_text = scale_digits + period_text[0], period_text[1:]
        if not period_text:
            raise RateError(f"invalid rate {text!r}: missing period unit")
        if period_text not in _PERIOD_SECONDS:
            raise RateError(f"invalid rate {text!r}: unknown period {period_text!r}")
        period = _PERIOD_SECONDS[period_text] * (int(scale_digits) if scale_digits else 1)
        limit = _separated_number(limit_text, text)
        if limit == 0:
            raise RateError(f"invalid rate {text!r}: limit must be greater than 0")
        if period == 0:
            raise RateError(f"invalid rate {text!r}: period must be greater than 0")
        return cls(limit, period, max_burst, force_local)

    def format(self) -> str:
        units = {86400: "d", 3600: "h", 60: "m", 1: "s"}
        period = units.get(self.period_seconds, f"{self.period_seconds}s")
        burst = "" if self.max_burst is None else f",max_burst={self.max_burst}"
        local = "local:" if self.force_local else ""
        return f"{local}{self.limit}/{period}{burst}"

    def __str__(self) -> str:
        return self.format()


def _separated_number(value: str, whole: str) -> int:
    """A u64 written with optional `_` or `,` separators (`1_000`, `1,000`)."""
    digits = value.replace("_", "").replace(",", "")
    if not digits.isascii() or not digits.isdigit():
        raise RateError(f"invalid rate {whole!r}: invalid number {value!r}")
    number = int(digits)
    if number > 2**64 - 1:
        raise RateError(f"invalid rate {whole!r}: number {value!r} too large")
    return number


def iso_from_millis(millis: int) -> str:
    """Epoch milliseconds as RFC 3339 UTC text ending in `Z`, as KumoMTA's admin API shows times."""
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat().replace("+00:00", "Z")
