"""SMTP connection pools, one per (egress source, site): KumoMTA's ready queues.

A pool lends ready sessions to deliveries. It holds at most `connection_limit` sessions (open
or being opened); a delivery that finds none idle and the limit reached waits for one to come
back. A session goes back to the idle list after a transaction unless the peer closed it (421,
timeout) or it reached `max_deliveries_per_connection`; an idle session is closed (QUIT) after
`idle_timeout` seconds. Idle sessions are reused most-recently-used first so that a quiet site
shrinks to the connections it really needs.

Opening walks the candidate addresses strictly in the order given: the first that completes
banner, EHLO and (per TLS mode) STARTTLS wins; when all fail, `AllCandidatesFailed` carries
every reason.

The egress path's throttles apply per pool: `max_message_rate` before each message,
`max_connection_rate` before each new connection. A throttled delivery waits for its token
(it is not an attempt that failed); `throttled_messages` / `throttled_connections` count the
waits. A path config that changes (its refresh) reconfigures the pool in place: new limits
apply to the next lease, new session options to the next connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.domain.queue_name import ready_queue_name
from ..core.domain.token_bucket import MessageRate, TokenBucket
from ..core.kafka.ready_queue_states import (
    CONNECTION_LIMITED,
    CONNECTION_RATE_THROTTLED,
    MESSAGE_RATE_THROTTLED,
)
from .smtp_session import (
    ConnectFailed,
    Destination,
    PeerReply,
    SessionFacts,
    SessionOptions,
    SmtpSession,
    StaleSession,
)


@dataclass(frozen=True)
class PoolKey:
    egress_source: str
    site: str

    @property
    def ready_queue(self) -> str:
        return ready_queue_name(self.egress_source, self.site)


@dataclass(frozen=True)
class PoolLimits:
    connection_limit: int = 32
    max_deliveries_per_connection: int = 1024
    idle_timeout: float = 5.0
    # Egress path throttles (None: unthrottled).
    message_rate: MessageRate | None = None
    connection_rate: MessageRate | None = None

    def __post_init__(self) -> None:
        if self.connection_limit < 1 or self.max_deliveries_per_connection < 1:
            raise ValueError("connection_limit and max_deliveries_per_connection must be >= 1")
        if self.idle_timeout < 0:
            raise ValueError("idle_timeout must be >= 0")


@dataclass(frozen=True)
class Transaction:
    """How one message went: the ending reply and who gave it."""

    reply: PeerReply
    destination: Destination
    tls: bool
    # The session was opened for this message (not reused).
    new_connection: bool
    session: SessionFacts


class SiteGivenUp(Exception):
    """The pool retired (a rebalance) while this delivery waited for a token or a session:
    nothing was sent; the request goes to the site's next owner."""


class ReadyQueueSuspended(Exception):
    """An operator suspended the ready queue (suspend-ready-q): no session was used or
    opened for this delivery; `reason` is the rule's."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


# A ready queue name -> the reason it is suspended now, or None.
SuspensionCheck = Callable[[str], str | None]


def _never_suspended(name: str) -> str | None:
    return None


class AllCandidatesFailed(Exception):
    """No candidate address gave a ready session; `failures` says why for each one."""

    def __init__(self, failures: Sequence[ConnectFailed]) -> None:
        self.failures = tuple(failures)
        detail = "; ".join(str(failure) for failure in self.failures) or "no candidate hosts"
        super().__init__(detail)


async def open_first_ready(
    candidates: Sequence[Destination], options: SessionOptions
) -> SmtpSession:
    """A session with the first candidate that accepts one, trying them in order."""
    failures: list[ConnectFailed] = []
    for destination in candidates:
        try:
            return await SmtpSession.open(destination, options)
        except ConnectFailed as failure:
            failures.append(failure)
    raise AllCandidatesFailed(failures)


class ConnectionPool:
    """The sessions of one (egress source, site)."""

    def __init__(
        self,
        key: PoolKey,
        limits: PoolLimits,
        options: SessionOptions,
        suspension: SuspensionCheck = _never_suspended,
    ) -> None:
        self.key = key
        self._suspension = suspension
        self.limits = limits
        self.options = options
        self._changed = asyncio.Condition()
        self._idle: list[SmtpSession] = []
        self._idle_timers: dict[SmtpSession, asyncio.TimerHandle] = {}
        # Sessions open or being opened, idle or lent out: what connection_limit bounds.
        self._count = 0
        self._waiting = 0
        self._closed = False
        self._background: set[asyncio.Task[None]] = set()
        self._message_bucket = _bucket(limits.message_rate)
        self._connection_bucket = _bucket(limits.connection_rate)
        # Sessions opened before `retire` are closed when they come back, not pooled.
        self._generation = 0
        self._born: dict[SmtpSession, int] = {}
        self.throttled_messages = 0
        self.throttled_connections = 0
        self.messages_sent = 0
        # Deliveries in this pool now: waiting for a token or a session, or sending (the
        # ready queue's ready_count).
        self.ready_count = 0
        # Since when (time.time()) deliveries wait for a session at connection_limit, for a
        # max_connection_rate token, for a max_message_rate token; None: not now.
        self.states: dict[str, float] = {}
        self._waiting_for: dict[str, int] = {}

    async def retire(self) -> None:
        """Give the site up (another process takes it over): close the idle sessions now,
        those lent out when they come back, and start the throttles empty."""
        async with self._changed:
            self._generation += 1
            idle, self._idle = self._idle, []
            for session in idle:
                self._idle_timers.pop(session).cancel()
                self._born.pop(session, None)
            self._count -= len(idle)
            self._changed.notify_all()
        self._message_bucket = _bucket(self.limits.message_rate)
        self._connection_bucket = _bucket(self.limits.connection_rate)
        # A peer slow to answer QUIT must not fail the rebalance this runs in.
        await asyncio.gather(*(session.close() for session in idle), return_exceptions=True)

    def configure(self, limits: PoolLimits, options: SessionOptions) -> None:
        """Apply a refreshed path config: limits at the next lease, options at the next
        connection (open sessions keep theirs). A changed rate starts a fresh bucket."""
        if limits.message_rate != self.limits.message_rate:
            self._message_bucket = _bucket(limits.message_rate)
        if limits.connection_rate != self.limits.connection_rate:
            self._connection_bucket = _bucket(limits.connection_rate)
        self.limits = limits
        self.options = options

    @property
    def connections(self) -> int:
        return self._count

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    @property
    def is_unused(self) -> bool:
        """Nothing open, nobody waiting: the registry may forget this pool."""
        return self._count == 0 and self._waiting == 0 and not self._background

    @contextlib.asynccontextmanager
    async def lease(self, candidates: Sequence[Destination]) -> AsyncIterator[SmtpSession]:
        """A ready session for one transaction; returned (or closed) when the block ends.

        Raises AllCandidatesFailed when a new session was needed and none could be opened.
        """
        session = await self._acquire(candidates)
        try:
            yield session
        except BaseException:
            # The session's state is unknown (cancelled mid-command, RSET failed): drop it.
            await self._discard(session)
            raise
        await self._release(session)

    async def send(
        self, candidates: Sequence[Destination], sender: str, recipient: str, content: bytes
    ) -> Transaction:
        """One message over a pooled session; a session that went stale is replaced.

        Raises AllCandidatesFailed when no session could be opened, ReadyQueueSuspended when
        the ready queue is suspended (now, or when this delivery's turn for a session came).
        """
        self._check_suspension()
        self.ready_count += 1
        try:
            generation = self._generation
            if self._message_bucket is not None and await self._take(
                self._message_bucket, MESSAGE_RATE_THROTTLED
            ):
                self.throttled_messages += 1
            if generation != self._generation:
                raise SiteGivenUp(str(self.key))
            # Every idle session may have gone stale at once (the peer restarted): one more
            # try than there can be sessions always reaches a freshly opened one.
            for _ in range(self.limits.connection_limit):
                try:
                    return await self._send_once(candidates, sender, recipient, content)
                except StaleSession:
                    continue
            return await self._send_once(candidates, sender, recipient, content)
        finally:
            self.ready_count -= 1

    async def _send_once(
        self, candidates: Sequence[Destination], sender: str, recipient: str, content: bytes
    ) -> Transaction:
        async with self.lease(candidates) as session:
            reply = await session.send(sender, recipient, content)
            self.messages_sent += 1
            return Transaction(
                reply,
                session.destination,
                session.tls_active,
                session.transactions == 1,
                session.facts,
            )

    async def _take(self, bucket: TokenBucket, state: str) -> bool:
        """Wait for one token; whether the caller had to wait (it was throttled: the pool
        is in `state` meanwhile). Raises SiteGivenUp when the pool retires meanwhile."""
        if bucket.try_take(_now_ms()):
            return False
        generation = self._generation
        self._waiting_for[state] = self._waiting_for.get(state, 0) + 1
        self.states.setdefault(state, time.time())
        try:
            while not bucket.try_take(_now_ms()):
                await asyncio.sleep(max(0, bucket.next_token_at(_now_ms()) - _now_ms()) / 1000)
                if generation != self._generation:
                    raise SiteGivenUp(str(self.key))
        finally:
            self._waiting_for[state] -= 1
            if not self._waiting_for[state]:
                self.states.pop(state, None)
        return True

    def _check_suspension(self) -> None:
        reason = self._suspension(self.key.ready_queue)
        if reason is not None:
            raise ReadyQueueSuspended(reason)

    async def _acquire(self, candidates: Sequence[Destination]) -> SmtpSession:
        generation = self._generation
        async with self._changed:
            while True:
                if self._closed:
                    raise RuntimeError(f"connection pool {self.key} is closed")
                if generation != self._generation:
                    raise SiteGivenUp(str(self.key))
                # Also for deliveries that waited here while the suspension began.
                self._check_suspension()
                session = self._take_idle()
                if session is not None:
                    return session
                if self._count < self.limits.connection_limit:
                    self._count += 1
                    break
                self._waiting += 1
                self.states.setdefault(CONNECTION_LIMITED, time.time())
                try:
                    await self._changed.wait()
                finally:
                    self._waiting -= 1
                    if not self._waiting:
                        self.states.pop(CONNECTION_LIMITED, None)
        try:
            if self._connection_bucket is not None and await self._take(
                self._connection_bucket, CONNECTION_RATE_THROTTLED
            ):
                self.throttled_connections += 1
            session = await open_first_ready(candidates, self.options)
        except BaseException:
            async with self._changed:
                self._count -= 1
                self._changed.notify()
            raise
        self._born[session] = self._generation
        return session

    def _take_idle(self) -> SmtpSession | None:
        """The most recently used idle session that is still connected (lock held)."""
        while self._idle:
            session = self._idle.pop()
            self._idle_timers.pop(session).cancel()
            if session.is_usable:
                return session
            self._count -= 1
            self._born.pop(session, None)
            self._close_in_background(session)
        return None

    async def _release(self, session: SmtpSession) -> None:
        reusable = (
            not self._closed
            and session.is_usable
            and session.transactions < self.limits.max_deliveries_per_connection
            and self._born.get(session) == self._generation
        )
        if not reusable:
            await self._discard(session)
            return
        async with self._changed:
            self._idle.append(session)
            loop = asyncio.get_running_loop()
            self._idle_timers[session] = loop.call_later(
                self.limits.idle_timeout, self._on_idle_timeout, session
            )
            self._changed.notify()

    async def _discard(self, session: SmtpSession) -> None:
        self._born.pop(session, None)
        async with self._changed:
            self._count -= 1
            self._changed.notify()
        self._close_in_background(session)

    def _on_idle_timeout(self, session: SmtpSession) -> None:
        self._spawn(self._expire(session))

    async def _expire(self, session: SmtpSession) -> None:
        async with self._changed:
            if session not in self._idle_timers:
                return  # taken for a delivery just before the timer fired
            self._idle.remove(session)
            del self._idle_timers[session]
            self._born.pop(session, None)
            self._count -= 1
            self._changed.notify()
        await session.close()

    def _close_in_background(self, session: SmtpSession) -> None:
        # QUIT may take a while on a slow peer; the delivery that ends here must not wait.
        self._spawn(session.close())

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def aclose(self) -> None:
        """Close idle sessions and wait for pending QUITs; later leases fail."""
        async with self._changed:
            self._closed = True
            idle, self._idle = self._idle, []
            for timer in self._idle_timers.values():
                timer.cancel()
            self._idle_timers.clear()
            self._count -= len(idle)
            self._changed.notify_all()
        await asyncio.gather(*(session.close() for session in idle), *self._background)


def _bucket(rate: MessageRate | None) -> TokenBucket | None:
    # Empty at first: this process may be taking the site over from another that just spent
    # the burst; together they then stay within one bucket's bound (README, "Egress limits").
    return None if rate is None else TokenBucket(rate, _now_ms(), full=False)


def _now_ms() -> int:
    return int(asyncio.get_running_loop().time() * 1000)


class PoolRegistry:
    """Every pool of this process, created on first use and forgotten when unused."""

    # Forget unused pools every this many lookups: sites come and go with the traffic.
    PRUNE_EVERY = 1024

    def __init__(
        self,
        limits: PoolLimits,
        options: SessionOptions,
        *,
        on_created: Callable[[ConnectionPool], None] | None = None,
        on_forgotten: Callable[[ConnectionPool], None] | None = None,
        suspension: SuspensionCheck = _never_suspended,
    ) -> None:
        self._suspension = suspension
        # The limits and options of `pool(key)` without its own.
        self.limits = limits
        self.options = options
        self._pools: dict[PoolKey, ConnectionPool] = {}
        self._lookups = 0
        # Metrics follow the pools (metrics.py): a series per pool while it lives.
        self._on_created = on_created
        self._on_forgotten = on_forgotten

    def pool(
        self,
        key: PoolKey,
        limits: PoolLimits | None = None,
        options: SessionOptions | None = None,
    ) -> ConnectionPool:
        """The pool of `key`, created on first use; reconfigured when its egress path's
        limits or options changed."""
        self._lookups += 1
        if self._lookups % self.PRUNE_EVERY == 0:
            self._prune()
        limits = self.limits if limits is None else limits
        options = self.options if options is None else options
        pool = self._pools.get(key)
        if pool is None:
            pool = ConnectionPool(key, limits, options, self._suspension)
            self._pools[key] = pool
            if self._on_created is not None:
                self._on_created(pool)
        elif pool.limits is not limits or pool.options is not options:
            pool.configure(limits, options)
        return pool

    def pools(self) -> list[ConnectionPool]:
        return list(self._pools.values())

    def _prune(self) -> None:
        for key, pool in list(self._pools.items()):
            if pool.is_unused:
                del self._pools[key]
                if self._on_forgotten is not None:
                    self._on_forgotten(pool)

    async def retire_all(self) -> None:
        """Every pool gives its site up (`ConnectionPool.retire`): at a rebalance, before
        another delivery process may take the sites over."""
        await asyncio.gather(*(pool.retire() for pool in self._pools.values()))

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        await asyncio.gather(*(pool.aclose() for pool in pools))
