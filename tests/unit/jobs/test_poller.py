"""The poller's order when its limit holds polls back: the jobs about to finish go first."""

from __future__ import annotations

import asyncio
import time

from bot.config import JobSettings
from bot.jobs.poller import Poller
from bot.jobs.progress import EndWindow


async def test_a_job_about_to_finish_is_polled_before_a_backlog() -> None:
    polled: list[str] = []
    second_look = asyncio.Event()
    poller: Poller

    async def poll(job_id: str) -> bool:
        polled.append(job_id)
        if job_id == "ending":
            if polled.count("ending") == 1:  # its bar says: done in a moment
                now = time.time()
                poller.expect("ending", EndWindow(now + 0.05, now + 0.3))
            else:
                second_look.set()
        return True

    settings = JobSettings(poll_initial_s=1.0, poll_max_s=15.0)
    poller = Poller(poll, settings, webhooks_on=False, clock=time.time, max_polls_per_s=20.0)
    now = time.time()
    poller.schedule("ending", due=now - 1.0)
    for i in range(200):  # a backlog: every one of them overdue, more than the limit lets through in 10 s
        poller.schedule(f"routine{i}", due=now)
    poller.start()
    try:
        async with asyncio.timeout(30):
            await second_look.wait()
    finally:
        await poller.stop()
    second = [i for i, job in enumerate(polled) if job == "ending"][1]
    # Its second look came when its window opened, not after the 200 polls due before it.
    assert second < 50, polled[: second + 1]


async def test_with_webhooks_a_foreseen_end_changes_nothing() -> None:
    """Webhooks bring the end: the poller stays the safety net on its usual schedule."""
    polled: list[float] = []
    twice = asyncio.Event()
    poller: Poller

    async def poll(job_id: str) -> bool:
        polled.append(time.time())
        now = time.time()
        poller.expect(job_id, EndWindow(now + 0.01, now + 0.02))
        if len(polled) == 2:
            twice.set()
        return len(polled) < 2

    settings = JobSettings(poll_initial_s=0.2, poll_max_s=1.0, webhook_grace_s=0.0)
    poller = Poller(poll, settings, webhooks_on=True, clock=time.time)
    poller.schedule("job", due=time.time())
    poller.start()
    try:
        async with asyncio.timeout(10):
            await twice.wait()
    finally:
        await poller.stop()
    assert polled[1] - polled[0] >= 0.2  # the backoff interval, not the window's 10 ms
