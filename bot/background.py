"""A background task an object owns: started once, cancelled and waited for when the object stops.

Every long-lived loop in Encore (the poller, the scheduler's look at the queue, the lease keeper, retention,
the progress ticker, the notices) is one of these, so that none outlives the engine that stops it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


class OwnedTask:
    """At most one task at a time, named ``name``. :meth:`stop` cancels it and returns once it has ended."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._task: asyncio.Task[Any] | None = None

    @property
    def started(self) -> bool:
        """Whether a task was started and not stopped since (it may have ended by itself)."""
        return self._task is not None

    def start(self, work: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Run ``work()`` in the task, unless one was started already (``work`` is not called then)."""
        if self._task is None:
            self._task = asyncio.create_task(work(), name=self.name)

    async def stop(self) -> None:
        """Cancel the task, if any, and wait until it has ended, whatever it raised; start may run it again."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
