"""A client-side rate limit, so Encore stays under a provider's documented limits instead of hitting them.

Replicate allows 600 creates a minute and 3,000 other API calls a minute per account; past that it answers
429 and, when credit runs low, less. Retrying after a 429 is safe, but a backlog of hundreds of jobs would
otherwise spend most of its requests being refused. :class:`RateLimit` spreads calls out instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


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
