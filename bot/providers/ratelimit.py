"""A client-side rate limit, so Encore stays under a provider's documented limits instead of hitting them.

Replicate allows 600 creates a minute and 3,000 other API calls a minute per account; past that it answers
429 and, when credit runs low, less. Retrying after a 429 is safe, but a backlog of hundreds of jobs would
otherwise spend most of its requests being refused. :class:`RateLimit` spreads calls out instead.

The limits are per account, so processes sharing one account must share one budget: a provider takes its
limiters from a :data:`LimitFactory` the wiring passes in (``BuildContext.rate_limit``). Alone, that is
:func:`local_limit` (this process's own bucket); with a database several processes share, the wiring passes
buckets kept in it (``bot.storage.rate_limits``), wrapped in :class:`SharedOrLocal`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from bot.errors import StorageError

log = logging.getLogger(__name__)


class Limiter(Protocol):
    """A rate limit a provider waits on before each call."""

    async def acquire(self) -> None:
        """Wait until a call may go out now."""
        ...


# (key, per_minute, burst) -> the limiter for that budget. ``key`` names it for every process sharing it
# ("replicate:<account>:create"); calls with the same key share one budget.
LimitFactory = Callable[[str, int, int], Limiter]


class RateLimit:
    """At most ``per_minute`` calls in any 60 seconds, with bursts of up to ``burst``.

    A token bucket of ``burst`` tokens refilled at ``(per_minute - burst) / 60`` a second: a minute can hold
    one full bucket plus a minute of refill, which is ``per_minute``. Waiters are served in arrival order.
    """

    def __init__(
        self,
        per_minute: int,
        *,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not 1 <= burst < per_minute:
            raise ValueError(f"burst must be between 1 and per_minute - 1, got {burst} for {per_minute}")
        self._rate = (per_minute - burst) / 60.0
        self._capacity = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._lock = asyncio.Lock()  # FIFO: the first to wait is the first served

    async def acquire(self) -> None:
        """Wait until a call may go out now."""
        async with self._lock:
            while True:
                now = self._clock()
                self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self._rate)
                self._updated = now
                if self._tokens >= 1.0 - 1e-9:  # (a sleep can end a rounding error short of a whole token)
                    self._tokens = max(0.0, self._tokens - 1.0)
                    return
                await self._sleep((1.0 - self._tokens) / self._rate)


def local_limit(key: str, per_minute: int, burst: int) -> Limiter:
    """This process's own bucket (one process per account)."""
    return RateLimit(per_minute, burst=burst)


class SharedOrLocal:
    """The budget every process shares (``shared``), or, while storage refuses it, this process's own
    (``local``): a call never fails for want of the database, and once it answers again the shared one counts."""

    def __init__(self, shared: Limiter, local: Limiter, *, what: str) -> None:
        self._shared = shared
        self._local = local
        self._what = what
        self._trouble: StorageError | None = None

    async def acquire(self) -> None:
        try:
            await self._shared.acquire()
        except StorageError as exc:
            if self._trouble is None:
                log.warning("the shared rate limit %s can't be read (%s); this process counts alone", self._what, exc)
            self._trouble = exc
            await self._local.acquire()
            return
        if self._trouble is not None:
            log.info("the shared rate limit %s is counted again", self._what)
            self._trouble = None
