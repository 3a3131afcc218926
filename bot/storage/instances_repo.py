"""SQL for ``instances``: the Encore processes sharing the database, and when each was last heard from.

Each process beats (``seen_at``, by the database's clock, so the processes' own clocks never disagree about it)
while it runs and leaves when it stops. One not heard from within ``gone_after_s`` is gone: another process may
take over what it claimed (``queue_repo``).
"""

from __future__ import annotations

from bot.storage.backend import Backend
from bot.storage.sql import Dialect


def live_instances(dialect: Dialect) -> str:
    """A subquery: the ids of the processes heard from within ``:gone_after_s`` seconds."""
    return f"SELECT id FROM instances WHERE seen_at >= {dialect.now_s} - :gone_after_s"  # noqa: S608 - fixed text


class InstancesRepo:
    def __init__(self, db: Backend) -> None:
        self._db = db

    async def beat(self, instance: str) -> None:
        """``instance`` is alive now."""
        now = self._db.dialect.now_s
        await self._db.write(
            f"INSERT INTO instances (id, started_at, seen_at) VALUES (?, {now}, {now}) "  # noqa: S608 - fixed text
            "ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at",
            (instance,),
            quiet=True,  # it runs every few seconds, whatever the jobs do: it says nothing of their writes
        )

    async def leave(self, instance: str) -> None:
        """``instance`` stopped: it claims nothing any more."""
        await self._db.write("DELETE FROM instances WHERE id = ?", (instance,), quiet=True)

    async def forget_gone(self, *, older_than_s: float) -> int:
        """Forget processes not heard from in ``older_than_s`` seconds (their claims were taken over long ago)."""
        return await self._db.write(
            f"DELETE FROM instances WHERE seen_at < {self._db.dialect.now_s} - ?",  # noqa: S608 - fixed text
            (older_than_s,),
            quiet=True,
        )

    async def alive(self, *, gone_after_s: float) -> list[str]:
        """The processes heard from within ``gone_after_s`` seconds."""
        rows = await self._db.read(live_instances(self._db.dialect), {"gone_after_s": gone_after_s})
        return [str(row[0]) for row in rows]
