"""Token buckets for KumoMTA's throttles (`max_message_rate` of a scheduled queue, an egress
path's `max_message_rate` and `max_connection_rate`): pure arithmetic over an injected clock
(milliseconds).

A rate `limit/period` (e.g. 100 per second) becomes a bucket of `burst` tokens (default
`limit`) refilled at `limit / period`: as KumoMTA's throttles, a queue may burst and then
releases at the steady rate. Over any window of `t` ms at most `burst + limit * t / period`
messages pass. A throttled message just waits: it does not count as an attempt.
"""

from __future__ import annotations

from dataclasses import dataclass

from .durations import Rate


@dataclass(frozen=True, slots=True)
class MessageRate:
    """At most `limit` messages per `period_ms` milliseconds, bursting up to `burst`
    (default: `limit`, as KumoMTA's max_burst)."""

    limit: int
    period_ms: int
    burst: int | None = None

    @property
    def capacity(self) -> int:
        return self.burst if self.burst is not None else self.limit

    @classmethod
    def from_rate(cls, rate: Rate) -> MessageRate:
        return cls(rate.limit, rate.period_seconds * 1000, rate.max_burst)

    def __post_init__(self) -> None:
        if self.limit < 1 or self.period_ms < 1 or (self.burst is not None and self.burst < 1):
            raise ValueError(f"a message rate needs limit >= 1 and period >= 1 ms, got {self}")


class TokenBucket:
    """The throttle of one scheduled queue."""

    __slots__ = ("_tokens", "_updated_at", "rate")

    def __init__(self, rate: MessageRate, now_ms: int, *, full: bool = True) -> None:
        """`full=False` starts empty: the bucket of an owner taking over from another, which
        may have just spent the burst (the pair then stays within one bucket's bound)."""
        self.rate = rate
        self._tokens = float(rate.capacity) if full else 0.0
        self._updated_at = now_ms

    def _refill(self, now_ms: int) -> None:
        # A clock that goes backwards (it should not) never adds tokens.
        elapsed = max(0, now_ms - self._updated_at)
        self._tokens = min(
            float(self.rate.capacity),
            self._tokens + elapsed * self.rate.limit / self.rate.period_ms,
        )
        self._updated_at = max(self._updated_at, now_ms)

    def try_take(self, now_ms: int) -> bool:
        """Take one token if there is one; False means the queue must wait."""
        self._refill(now_ms)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def next_token_at(self, now_ms: int) -> int:
        """The earliest time at which `try_take` can succeed."""
        self._refill(now_ms)
        if self._tokens >= 1.0:
            return now_ms
        missing = 1.0 - self._tokens
        # Round up so that a caller waking at this time always finds a whole token.
        wait = -(-missing * self.rate.period_ms // self.rate.limit)
        return now_ms + int(wait) + 1
