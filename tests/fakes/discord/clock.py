"""Simulated wall clock and snowflake ids.

The simulator never reads real time for rules that matter (interaction deadlines, token lifetime, CDN
expiry). It reads :class:`SimClock`, which starts at the real time of construction and then moves only
when a test calls :meth:`SimClock.advance` (or, with ``realtime=True``, also with real time).
"""

from __future__ import annotations

import datetime as dt
import time

DISCORD_EPOCH_MS = 1_420_070_400_000


class SimClock:
    """Epoch-seconds clock that a test moves by hand.

    ``SimClock()`` is frozen: ``now()`` returns the same value until ``advance()`` is called.
    ``SimClock(realtime=True)`` follows real time plus whatever was added with ``advance()``.
    """

    def __init__(self, start: float | None = None, *, realtime: bool = False) -> None:
        self._base = time.time() if start is None else start
        self._offset = 0.0
        self._realtime = realtime
        self._t0 = time.monotonic()

    @property
    def realtime(self) -> bool:
        return self._realtime

    def now(self) -> float:
        """Current simulated time in epoch seconds."""
        elapsed = time.monotonic() - self._t0 if self._realtime else 0.0
        return self._base + self._offset + elapsed

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (must be >= 0)."""
        if seconds < 0:
            raise ValueError("the simulated clock only moves forward")
        self._offset += seconds

    def datetime(self, at: float | None = None) -> dt.datetime:
        """``at`` (default: now) as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self.now() if at is None else at, tz=dt.UTC)

    def iso(self, at: float | None = None) -> str:
        """``at`` (default: now) in Discord's ISO 8601 timestamp format."""
        return self.datetime(at).isoformat()


class SnowflakeFactory:
    """Makes unique, increasing Discord snowflakes whose timestamp is the simulated time."""

    def __init__(self, clock: SimClock) -> None:
        self._clock = clock
        self._last = 0

    def next(self) -> int:
        ms = int(self._clock.now() * 1000) - DISCORD_EPOCH_MS
        candidate = (ms << 22) | (1 << 17)
        self._last = max(candidate, self._last + 1)
        return self._last


def snowflake_time(snowflake: int) -> float:
    """Epoch seconds encoded in ``snowflake``."""
    return ((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000
