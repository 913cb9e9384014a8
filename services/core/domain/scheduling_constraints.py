"""KumoMTA's per-message scheduling constraints (`msg:set_scheduling`, the `X-Schedule`
header): a first attempt not before a time, an expiry time, and a delivery window of days of
the week and hours in a time zone. Parsed and checked here; see the policy layer for what
relaystream does with them today."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
WINDOW_FIELDS = ("dow", "tz", "start", "end")
KNOWN_FIELDS = frozenset(("first_attempt", "expires", *WINDOW_FIELDS))


class SchedulingError(ValueError):
    """Scheduling parameters KumoMTA would refuse."""


@dataclass(frozen=True, slots=True)
class DeliveryWindow:
    days: frozenset[int]  # 0 = Monday
    zone: ZoneInfo
    start: time
    end: time


@dataclass(frozen=True, slots=True)
class Scheduling:
    first_attempt: datetime | None
    expires: datetime | None
    window: DeliveryWindow | None


def parse_scheduling(params: object) -> Scheduling:
    if not isinstance(params, dict):
        raise SchedulingError("scheduling parameters must be a table (a JSON object)")
    unknown = sorted(set(params) - KNOWN_FIELDS)
    if unknown:
        raise SchedulingError(f"unknown scheduling field(s): {', '.join(unknown)}")
    present = [name for name in WINDOW_FIELDS if params.get(name) is not None]
    window = None
    if present:
        if len(present) != len(WINDOW_FIELDS):
            raise SchedulingError("dow, tz, start and end must be given together or not at all")
        window = DeliveryWindow(
            _days(params["dow"]),
            _zone(params["tz"]),
            _time_of_day("start", params["start"]),
            _time_of_day("end", params["end"]),
        )
    return Scheduling(
        _timestamp("first_attempt", params.get("first_attempt")),
        _timestamp("expires", params.get("expires")),
        window,
    )


def _timestamp(name: str, value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise SchedulingError(f"{name} must be an RFC 3339 date-time string")
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError as err:
        raise SchedulingError(f"{name}: {value!r} is not an RFC 3339 date-time") from err
    if parsed.tzinfo is None:
        raise SchedulingError(f"{name}: {value!r} has no UTC offset (RFC 3339 needs one)")
    return parsed


def _days(value: object) -> frozenset[int]:
    if not isinstance(value, str):
        raise SchedulingError("dow must be a string such as 'Mon,Wed'")
    days: set[int] = set()
    for item in value.split(","):
        name = item.strip().lower()
        matches = [i for i, day in enumerate(DAYS) if len(name) >= 3 and day.startswith(name)]
        if not matches:
            raise SchedulingError(f"dow: {item.strip()!r} is not a day of the week")
        days.add(matches[0])
    return frozenset(days)


def _zone(value: object) -> ZoneInfo:
    if not isinstance(value, str) or not value:
        raise SchedulingError("tz must be an IANA time zone name such as 'America/Phoenix'")
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise SchedulingError(f"tz: {value!r} is not an IANA time zone name") from err


def _time_of_day(name: str, value: object) -> time:
    if not isinstance(value, str):
        raise SchedulingError(f"{name} must be a time of day 'HH:MM:SS'")
    try:
        return time.fromisoformat(value)
    except ValueError as err:
        raise SchedulingError(f"{name}: {value!r} is not a time of day 'HH:MM:SS'") from err
