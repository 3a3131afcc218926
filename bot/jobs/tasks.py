"""Task supervision for the engine: every background task is owned, named, and cancelled at stop.

- :meth:`Tasks.spawn` starts a task named ``"<what>:<job id>"`` (its log lines carry the job id) and logs it
  if it crashes.
- :meth:`Tasks.pipeline` runs one task per key at a time (a job's output fetch, a card's deliveries); a
  second caller backs off.
- :meth:`Tasks.nap` sleeps before a retry, and ends at once when the engine stops.
- :meth:`Tasks.record` runs a write that records an outcome until it is stored, shielded from cancellation.
- :meth:`Tasks.wait_for_storage` backs a job off while storage refuses its writes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from bot.errors import StorageError
from bot.logs import job_task_context

log = logging.getLogger(__name__)

STORAGE_RETRY_MAX_S = 60.0  # storage refusing writes (locked, full): look again at least this often

Write = Callable[[], Coroutine[Any, Any, bool]]


class Tasks:
    def __init__(self, retry_delay: Callable[[int], float]) -> None:
        """``retry_delay(attempt)``: how long to wait before the ``attempt``-th retry."""
        self.retry_delay = retry_delay
        self.accepting = False  # between start and stop: new jobs are taken
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._outcomes: set[asyncio.Task[Any]] = set()
        self._pipelines: dict[str, asyncio.Task[None]] = {}
        self._storage_waits: dict[str, int] = {}  # jobs whose writes storage refused: how often in a row

    def open(self) -> None:
        """Take jobs (again): naps sleep their full time."""
        self._stopping.clear()
        self.accepting = True

    async def stop(self, *, grace_s: float) -> None:
        """Stop taking jobs, give pipelines ``grace_s`` to finish, cancel the rest, let outcomes be recorded."""
        self.begin_stop()
        pipelines = [task for task in self._pipelines.values() if not task.done()]
        if pipelines:
            await asyncio.wait(pipelines, timeout=grace_s)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*self._outcomes, return_exceptions=True)

    def begin_stop(self) -> None:
        """Refuse new jobs and end naps now (the rest of :meth:`stop` follows)."""
        self.accepting = False
        self._stopping.set()

    # -- tasks ----------------------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        # Task names are "<what>:<job id>": log lines from the task carry the job id.
        job_id = name.rpartition(":")[2] or None
        task = asyncio.create_task(coro, name=name, context=job_task_context(job_id))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    def running(self, key: str) -> bool:
        running = self._pipelines.get(key)
        return running is not None and not running.done()

    def pipeline(self, key: str, coro: Coroutine[Any, Any, None]) -> bool:
        """Run ``coro`` as the one task for ``key``; False (and ``coro`` closed) if one runs already."""
        if self.running(key):
            coro.close()
            return False
        task = self.spawn(coro, name=f"pipeline:{key}")
        self._pipelines[key] = task
        task.add_done_callback(lambda _: self._pipelines.pop(key, None))
        return True

    # -- waiting ----------------------------------------------------------------------------------------

    async def nap(self, delay_s: float) -> bool:
        """Sleep before a retry; False (at once) if the engine is stopping, so the caller gives up."""
        try:
            async with asyncio.timeout(delay_s):
                await self._stopping.wait()
        except TimeoutError:
            return True
        return False

    async def record(self, write: Write) -> bool:
        """Run a write that records an outcome to completion even if our caller is cancelled.

        The outcome already happened (a file is stored, a message posted), so a write that storage refuses
        (locked, full) is tried again until it is stored, rather than the work being done twice; only a stop
        gives up, and the next start picks the job up from what the database says.
        """
        task = asyncio.create_task(self._write_until_stored(write))
        self._outcomes.add(task)
        task.add_done_callback(self._outcomes.discard)
        return await asyncio.shield(task)

    async def _write_until_stored(self, write: Write) -> bool:
        attempt = 0
        while True:
            try:
                return await write()
            except StorageError as exc:
                attempt += 1
                delay = min(self.retry_delay(attempt), STORAGE_RETRY_MAX_S)
                log.warning("recording an outcome failed (%s); trying again in %.1f s", exc, delay)
                if not await self.nap(delay):
                    raise

    async def wait_for_storage(self, job_id: str, exc: StorageError) -> bool:
        """Storage refused a write for ``job_id``, so the step recorded nothing: back off before trying again.

        False if the engine is stopping (the next start picks the job up from the database).
        """
        attempt = self._storage_waits[job_id] = self._storage_waits.get(job_id, 0) + 1
        delay = min(self.retry_delay(attempt), STORAGE_RETRY_MAX_S)
        log.warning("job %s: storage refused a write (%s); trying again in %.1f s", job_id, exc, delay)
        return await self.nap(delay)

    def storage_ok(self, job_id: str) -> None:
        """A write for ``job_id`` went through (or the job ended): its next storage wait starts short again."""
        self._storage_waits.pop(job_id, None)
