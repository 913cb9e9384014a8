"""kumo.time (and kumo.sleep): Time and TimeDelta values, durations, sleeping within the policy
deadline. time.lua keeps a Time as integer microseconds since the Unix epoch (UTC) and a
TimeDelta as signed integer microseconds; Python formats and parses them."""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from prometheus_client import Histogram

from ...domain.durations import DurationError, format_duration, parse_duration
from ..host import HostCallback, HostContext, HostError

# KumoMTA's user_lua_latency, in the /metrics of the service whose policy timed it.
USER_LUA_LATENCY = Histogram(
    "relaystream_policy_user_latency_seconds",
    "How long something a policy timed with kumo.time.start_timer took, by the timer's label",
    ["label"],
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def as_datetime(micros: object) -> datetime:
    if not isinstance(micros, int) or isinstance(micros, bool):
        raise HostError("not a Time")
    try:
        return _EPOCH + timedelta(microseconds=micros)
    except OverflowError as err:
        raise HostError("time out of range") from err


def as_micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def now_micros() -> int:
    return time.time_ns() // 1_000


def duration_micros(value: object) -> int:
    """kumo.time.parse_duration: signed seconds (integer or float) or a duration string."""
    negative = False
    if isinstance(value, str):
        text = value.strip()
        negative = text.startswith("-")
        value = text.removeprefix("-").strip()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise HostError(f"invalid duration {value!r}")
        negative = value < 0
        value = -value if negative else value
    try:
        micros = parse_duration(value) // timedelta(microseconds=1)
    except DurationError as err:
        raise HostError(str(err)) from err
    return -micros if negative else micros


def human(micros: object) -> str:
    if not isinstance(micros, int):
        raise HostError("not a TimeDelta")
    text = format_duration(timedelta(microseconds=abs(micros)))
    return f"-{text}" if micros < 0 else text


def time_field(micros: object, name: object) -> object:
    moment = as_datetime(micros)
    if name in ("year", "month", "day", "hour", "minute", "second"):
        return getattr(moment, str(name))
    if name == "rfc2822":
        # As chrono writes it (KumoMTA): the day of the month without a leading zero.
        return f"{moment:%a}, {moment.day} {moment:%b %Y %H:%M:%S} +0000"
    if name == "rfc3339":
        return moment.isoformat()
    if name == "text":
        return (
            moment.strftime("%Y-%m-%d %H:%M:%S")
            + (f".{moment.microsecond:06d}".rstrip("0") if moment.microsecond else "")
            + " UTC"
        )
    raise HostError(f"Time has no field {name!r}")


def time_format(micros: object, pattern: object) -> str:
    if not isinstance(pattern, str):
        raise HostError("Time:format: the format must be a string")
    try:
        return as_datetime(micros).strftime(pattern)
    except ValueError as err:
        raise HostError(f"Time:format: invalid format {pattern!r}: {err}") from err


def parse_rfc3339(text: object) -> int:
    if not isinstance(text, str):
        raise HostError("expected a string")
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as err:
        raise HostError(f"not an RFC 3339 time: {text!r}") from err
    if moment.tzinfo is None:
        raise HostError(f"not an RFC 3339 time: {text!r} has no UTC offset")
    return as_micros(moment)


def parse_rfc2822(text: object) -> int:
    if not isinstance(text, str):
        raise HostError("expected a string")
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError) as err:
        raise HostError(f"not an RFC 2822 time: {text!r}") from err
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return as_micros(moment)


def with_ymd_hms(*parts: object) -> int:
    numbers = [p for p in parts if isinstance(p, int) and not isinstance(p, bool)]
    if len(parts) != 6 or len(numbers) != 6:
        raise HostError("expected six integers: year, month, day, hour, minute, second")
    try:
        year, month, day, hour, minute, second = numbers
        return as_micros(datetime(year, month, day, hour, minute, second, tzinfo=UTC))
    except ValueError as err:
        raise HostError(f"invalid date or time: {err}") from err


def from_unix_timestamp(seconds: object) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise HostError("expected a number of seconds")
    if isinstance(seconds, float) and not math.isfinite(seconds):
        raise HostError(f"invalid timestamp {seconds!r}")
    micros = round(seconds * 1_000_000)
    as_datetime(micros)
    return micros


def sleep(seconds: object) -> None:
    """Sleeps; time.lua has checked that the policy call's deadline allows it."""
    if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds > 0:
        time.sleep(float(seconds))


def timer_done(label: object, seconds: object) -> None:
    if isinstance(seconds, int | float) and not isinstance(seconds, bool):
        USER_LUA_LATENCY.labels(str(label)).observe(max(0.0, float(seconds)))


def host_callbacks(context: HostContext) -> Mapping[str, HostCallback]:
    return {
        "time_now": now_micros,
        "time_monotonic": time.monotonic,
        "time_duration": duration_micros,
        "time_human": human,
        "time_field": time_field,
        "time_format": time_format,
        "time_parse_rfc3339": parse_rfc3339,
        "time_parse_rfc2822": parse_rfc2822,
        "time_with_ymd_hms": with_ymd_hms,
        "time_from_unix_timestamp": from_unix_timestamp,
        "time_sleep": sleep,
        "time_timer_done": timer_done,
    }
