"""Rate limits shared by every process using the database: a token bucket a row of ``rate_limits``.

A provider's limits are per account (Replicate: 600 creates and 3,000 other calls a minute), so the processes
sharing one account must share one budget. :class:`SharedRateLimit` keeps the same token bucket as the
providers' own :class:`~bot.providers.ratelimit.RateLimit` (``burst`` tokens, refilled at ``(per_minute -
burst) / 60`` a second, so no 60 seconds hold more than ``per_minute`` calls), but in the database: one
conditional ``UPDATE`` refills the bucket for the time since it was last spent and takes a token if there is
one, by the database's clock (the processes' own clocks may disagree). The providers use it through their
``Limiter`` protocol, passed in by the wiring (``bot.app``): storage and providers don't import each other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from bot.storage.backend import Backend

_MIN_WAIT_S = 0.005  # a wait shorter than this is spent asking again


class SharedRateLimit:
    """At most ``per_minute`` calls in any 60 seconds, with bursts of up to ``burst``, across every process
    that uses this database and ``key``. In one process, waiters are served in arrival order."""

    def __init__(
        self,
        db: Backend,
        key: str,
        per_minute: int,
        *,
        burst: int,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not 1 <= burst < per_minute:
            raise ValueError(f"burst must be between 1 and per_minute - 1, got {burst} for {per_minute}")
        self._db = db
        self._key = key
        self._rate = (per_minute - burst) / 60.0
        self._capacity = float(burst)
        self._sleep = sleep
        self._lock = asyncio.Lock()  # FIFO: the first to wait is the first served
        self._made = False  # the bucket's row exists
        now = db.dialect.now_s
        elapsed = f"(CASE WHEN {now} > updated_at THEN {now} - updated_at ELSE 0.0 END)"
        filled = f"(tokens + {elapsed} * :rate)"
        self._tokens = f"(CASE WHEN {filled} > :capacity THEN :capacity ELSE {filled} END)"
        left = f"(CASE WHEN {self._tokens} > 1.0 THEN {self._tokens} - 1.0 ELSE 0.0 END)"
        self._spend = (  # only fixed fragments are spliced in
            f"UPDATE rate_limits SET tokens = {left}, updated_at = {now} "  # noqa: S608
            f"WHERE key = :key AND {self._tokens} >= :whole"
        )
        self._make = (
            f"INSERT INTO rate_limits (key, tokens, updated_at) VALUES (:key, :capacity, {now}) "  # noqa: S608
            "ON CONFLICT (key) DO NOTHING"
        )
        self._look = f"SELECT {self._tokens} FROM rate_limits WHERE key = :key"  # noqa: S608 - fixed fragments

    async def acquire(self) -> None:
        """Wait until a call may go out now (storage trouble raises a :class:`~bot.errors.StorageError`)."""
        async with self._lock:
            while (wait_s := await self._take()) is not None:
                await self._sleep(wait_s)

    async def _take(self) -> float | None:
        """Take a token: None if one was taken, else how long until one is there."""
        params = {"key": self._key, "rate": self._rate, "capacity": self._capacity}
        if not self._made:
            await self._db.write(self._make, params, quiet=True)  # a new bucket starts full
            self._made = True
        # (a sleep can end a rounding error short of a whole token)
        # Quiet: a provider call's bookkeeping says nothing of whether the jobs' writes work.
        if await self._db.write(self._spend, {**params, "whole": 1.0 - 1e-9}, quiet=True) == 1:
            return None
        row = await self._db.read_one(self._look, params)
        tokens = float(row[0]) if row is not None else 0.0
        if row is None:
            self._made = False  # someone removed it: make it again
        return max(_MIN_WAIT_S, (1.0 - tokens) / self._rate)
