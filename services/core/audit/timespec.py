"""Points in time as operators type them: ISO 8601, or a duration ago ("2h", "1d 6h").

A time without a UTC offset (`2026-11-24T12:00`, `2026-11-24`) is UTC: audits compare it with
Kafka timestamps, which are UTC, and a shell's local time zone should not change the answer.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ..domain.durations import DurationError, parse_duration


class TimeSpecError(ValueError):
    """Text that is neither an ISO 8601 time nor a duration."""


def parse_time(text: str, now: datetime) -> datetime:
    """`text` as an aware UTC datetime; a duration means that long before `now`."""
    stripped = text.strip()
    if not stripped:
        raise TimeSpecError("empty time")
    iso = stripped[:-1] + "+00:00" if stripped[-1] in "zZ" else stripped
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        pass
    else:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    try:
        ago = parse_duration(stripped)
    except DurationError as err:
        raise TimeSpecError(
            f"bad time {text!r}: expected ISO 8601 (2026-11-24T12:00:00Z) or a duration "
            f"ago (90s, 15m, 2h, 3d): {err}"
        ) from err
    return now - ago
