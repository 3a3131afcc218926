"""OwnedTask: the one background task an object owns is started once, and stopping it ends it for good."""

from __future__ import annotations

import asyncio

from bot.background import OwnedTask


async def test_starting_twice_runs_one_task_and_stop_ends_it() -> None:
    runs: list[int] = []
    ended = asyncio.Event()
    running = asyncio.Event()

    async def work() -> None:
        runs.append(1)
        running.set()
        try:
            await asyncio.Event().wait()  # forever, until cancelled
        finally:
            ended.set()

    owned = OwnedTask("work")
    owned.start(work)
    owned.start(work)  # already running: not called again
    async with asyncio.timeout(10):
        await running.wait()
    assert [t.get_name() for t in asyncio.all_tasks() if t.get_name() == "work"] == ["work"]
    await owned.stop()
    assert ended.is_set()  # stop returned only once the task had ended
    assert runs == [1]
    assert not owned.started
    assert "work" not in {t.get_name() for t in asyncio.all_tasks()}


async def test_stop_without_start_and_after_a_crash_is_quiet() -> None:
    owned = OwnedTask("crash")
    await owned.stop()  # never started: nothing to do
    crashing = asyncio.Event()

    async def crash() -> None:
        crashing.set()
        raise RuntimeError("boom")

    owned.start(crash)
    async with asyncio.timeout(10):
        await crashing.wait()
    await owned.stop()  # what it raised stays with it
    assert not owned.started


async def test_it_runs_again_after_a_stop() -> None:
    ran = asyncio.Queue[str]()

    async def work() -> None:
        ran.put_nowait("ran")
        await asyncio.Event().wait()

    owned = OwnedTask("again")
    for _ in range(2):
        owned.start(work)
        async with asyncio.timeout(10):
            assert await ran.get() == "ran"
        assert owned.started
        await owned.stop()
    assert ran.empty()
