"""What the ``jobs`` table holds, counted for metrics and ``python -m bot db stats``."""

from __future__ import annotations

from typing import NamedTuple

from bot.records import JobStatus
from bot.storage.backend import Backend


class ActiveJob(NamedTuple):
    id: str
    model: str
    status: JobStatus
    created_at: float


class StatsRepo:
    def __init__(self, db: Backend) -> None:
        self._db = db

    async def counts_by_status(self) -> dict[JobStatus, int]:
        rows = await self._db.read("SELECT status, COUNT(*) FROM jobs GROUP BY status")
        return {JobStatus(row[0]): int(row[1]) for row in rows}

    async def counts_by_model_and_status(self) -> list[tuple[str, JobStatus, int]]:
        """How many jobs there are of each (model, status), for metrics and ``db stats``."""
        rows = await self._db.read("SELECT model, status, COUNT(*) FROM jobs GROUP BY 1, 2 ORDER BY 1, 2")
        return [(str(row[0]), JobStatus(row[1]), int(row[2])) for row in rows]

    async def oldest_active(self) -> ActiveJob | None:
        """The unfinished job queued longest ago (few columns: this also reads databases of other versions)."""
        row = await self._db.read_one(
            "SELECT id, model, status, created_at FROM jobs "
            "WHERE status NOT IN ('delivered', 'failed', 'canceled') ORDER BY created_at LIMIT 1"
        )
        return ActiveJob(str(row[0]), str(row[1]), JobStatus(row[2]), float(row[3])) if row else None
