"""Encore processes sharing one PostgreSQL database, in one test: each a real core (its own connection pool,
notifier, web server, job service and leases) on an event loop of its own, in a thread of its own.

:meth:`EncoreProcess.call` runs a coroutine in the process and awaits it from the test. :meth:`EncoreProcess.crash`
leaves what SIGKILL leaves: its event loop stops dead (nothing of it runs again: no lease given up, no write
finished, no goodbye), then the server ends its database connections, as it does when a client's process dies.
The fakes (Replicate) run in the test's own loop and are reached over loopback, as from a separate process.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from tests.conftest import StorageBackend
from tests.fakes.replicate import FakeReplicate
from tests.integration.conftest import Harness

T = TypeVar("T")


class EncoreProcess:
    def __init__(self, name: str, fake: FakeReplicate, data_dir: Path, backend: StorageBackend) -> None:
        self.name = name
        self.harness = Harness(fake, data_dir, backend)
        self.backend = backend
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=f"encore-{name}", daemon=True)
        self._thread.start()
        self.crashed = False

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` in this process and wait for it here."""
        if self.crashed:
            coro.close()
            raise RuntimeError(f"process {self.name} has crashed")
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def crash(self) -> None:
        """Die as SIGKILL kills: stop dead, and have the server end this process's database connections."""
        core = self.harness.core
        assert core is not None
        self.loop.call_soon_threadsafe(self.loop.stop)
        await asyncio.to_thread(self._thread.join, 30)
        assert not self._thread.is_alive()
        self.crashed = True
        assert self.backend.url is not None
        admin = await asyncpg.connect(self.backend.url)
        try:
            ended = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name LIKE $1",
                f"encore {core.process_id}%",
            )
        finally:
            await admin.close()
        assert ended >= 1  # its pool and its listening connection

    def close(self) -> None:
        """After the test: let the loop run once more to close what the process had open, then end it."""
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._close(), self.loop).result(timeout=60)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=30)
        else:
            self.loop.run_until_complete(self._close())
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    async def _close(self) -> None:
        with contextlib.suppress(Exception):
            await self.harness.stop()
        current = asyncio.current_task()
        left = [task for task in asyncio.all_tasks() if task is not current]
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)
