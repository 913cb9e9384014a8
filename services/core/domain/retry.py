"""Retry, backoff and expiry after a transient failure (ROUTING.md section 6), as KumoMTA's
scheduled queue does it.

The delay doubles from `retry_interval` with each attempt already made (counted before the
increment), capped by `max_retry_interval`, in whole seconds. Jitter spreads retries of a
burst: up to a twentieth of `retry_interval` (at most a minute) around the delay, truncated
to whole seconds. A message whose next attempt would fall after `max_age` expires now.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from .durations import format_duration
from .queue_config import QueueConfig
from .smtp_reply import SmtpResponse

RandomSource = Callable[[], float]
"""Returns a float in [0, 1), like `random.Random().random`."""

_MAX_DELAY_SECONDS = timedelta.max.days * 86_400
MAX_JITTER_SECONDS = 60.0
DEFAULT_SCHEDULE_LIMIT = 1000


def _whole_seconds(value: timedelta) -> int:
    return value // timedelta(seconds=1)


def next_retry_delay(
    attempts: int, retry_interval: timedelta, max_retry_interval: timedelta | None
) -> timedelta:
    """The un-jittered delay after a transient failure of a message with `attempts` attempts
    made before this failure was counted: `min(retry_interval * 2**attempts, cap)`."""
    if attempts < 0:
        raise ValueError(f"attempts must be >= 0, got {attempts}")
    base = _whole_seconds(retry_interval)
    # Bound the exponent: beyond this, any positive interval exceeds what timedelta holds.
    delay = base * (2 ** min(attempts, 64))
    if max_retry_interval is not None:
        delay = min(delay, _whole_seconds(max_retry_interval))
    return timedelta(seconds=min(delay, _MAX_DELAY_SECONDS))


def jitter_magnitude(retry_interval: timedelta) -> float:
    """The width J of the jitter window in seconds: `min(retry_interval / 20, 60 s)`."""
    return min(retry_interval.total_seconds() / 20.0, MAX_JITTER_SECONDS)


def apply_jitter(delay: timedelta, retry_interval: timedelta, random: RandomSource) -> timedelta:
    """`delay` moved by uniform(-J/2, +J/2), the offset truncated toward zero to whole seconds;
    never below zero."""
    magnitude = jitter_magnitude(retry_interval)
    offset = int(random() * magnitude - magnitude / 2.0)
    return timedelta(seconds=max(_whole_seconds(delay) + offset, 0))


@dataclass(frozen=True)
class Requeue:
    next_due: datetime
    attempts: int
    delay: timedelta


@dataclass(frozen=True)
class Expire:
    """The message expires now: log an `Expiration` with `response` and remove it."""

    response: SmtpResponse
    attempts: int


def expiration_response(age_at_next_attempt: timedelta, max_age: timedelta) -> SmtpResponse:
    return SmtpResponse.with_code(
        551,
        (5, 4, 7),
        f"Next delivery time would be {format_duration(age_at_next_attempt)} after creation,"
        f" which exceeds max_age={format_duration(max_age)}",
    )


def decide_after_transient_failure(
    *,
    attempts: int,
    created_at: datetime,
    now: datetime,
    config: QueueConfig,
    random: RandomSource,
) -> Requeue | Expire:
    """Requeue a transiently failed message (attempts + 1, due after the jittered delay) or
    expire it when its age at that next attempt would exceed max_age."""
    delay = apply_jitter(
        next_retry_delay(attempts, config.retry_interval, config.max_retry_interval),
        config.retry_interval,
        random,
    )
    age_at_next_attempt = (now - created_at) + delay
    if age_at_next_attempt > config.max_age:
        return Expire(expiration_response(age_at_next_attempt, config.max_age), attempts + 1)
    return Requeue(now + delay, attempts + 1, delay)


def retry_schedule(config: QueueConfig, limit: int = DEFAULT_SCHEDULE_LIMIT) -> list[timedelta]:
    """The successive un-jittered delays a message that always fails transiently waits,
    starting from an immediate first attempt, until the next would exceed max_age.
    At most `limit` delays (a zero retry_interval would retry forever)."""
    delays: list[timedelta] = []
    elapsed = timedelta(0)
    while len(delays) < limit:
        delay = next_retry_delay(len(delays), config.retry_interval, config.max_retry_interval)
        if elapsed + delay > config.max_age:
            break
        delays.append(delay)
        elapsed += delay
    return delays
