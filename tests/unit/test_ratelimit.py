"""The client-side rate limit: never more than the limit in any minute, bursts first, waiters in order."""

from __future__ import annotations

import asyncio

import pytest

from bot.providers.ratelimit import RateLimit


class ManualClock:
    """Time that passes only when the limiter sleeps: the test is exact and instant."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def most_in_any_minute(times: list[float]) -> int:
    """The most calls in any window [t, t + 60) (``times`` ascending)."""
    most, left = 0, 0
    for right, t in enumerate(times):
        while t - times[left] >= 60.0:
            left += 1
        most = max(most, right - left + 1)
    return most


async def test_a_backlog_is_spread_under_the_limit() -> None:
    clock = ManualClock()
    limit = RateLimit(600, burst=20, clock=clock, sleep=clock.sleep)
    times = []
    for _ in range(2000):
        await limit.acquire()
        times.append(clock.now)
    assert times[:20] == [1000.0] * 20  # a burst goes out at once
    assert most_in_any_minute(times) <= 600
    # ...and no slower than the limit allows: 2000 calls take about (2000 - 20) / (580 / 60) seconds.
    assert times[-1] - times[0] == pytest.approx((2000 - 20) / (580 / 60), rel=0.01)


async def test_waiters_are_served_in_arrival_order() -> None:
    clock = ManualClock()
    limit = RateLimit(120, burst=1, clock=clock, sleep=clock.sleep)
    served: list[int] = []

    async def call(i: int) -> None:
        await limit.acquire()
        served.append(i)

    await asyncio.gather(*(call(i) for i in range(10)))
    assert served == list(range(10))


async def test_an_idle_limiter_refills_only_up_to_its_burst() -> None:
    clock = ManualClock()
    limit = RateLimit(600, burst=5, clock=clock, sleep=clock.sleep)
    clock.now += 3600.0  # an idle hour
    start = clock.now
    for _ in range(6):
        await limit.acquire()
    assert clock.now > start  # the sixth call had to wait: the bucket holds five


def test_nonsense_is_refused() -> None:
    with pytest.raises(ValueError, match="burst"):
        RateLimit(10, burst=10)
