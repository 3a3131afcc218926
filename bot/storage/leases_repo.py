"""SQL for ``leases``: which process polls a job, fetches its output, delivers its card or makes its long call.

A lease is a row (kind, key) held by one process until ``expires_at``. Taking one is one conditional upsert:
the row is written when it is absent, already the taker's (a renewal) or expired, and left alone otherwise
(the take lost). On PostgreSQL a second process's upsert of the same row waits for the first to commit, then
checks again, so exactly one wins. Times are Unix seconds from the callers' clocks: keep the machines' clocks
in step (NTP); a skew well under the lease time is harmless.

The orphan queries find work whose process is gone: jobs at a provider that no live lease covers, and finished
cards nobody is delivering.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from bot.records import Job
from bot.storage.backend import Backend
from bot.storage.job_rows import _row_to_job

_CHUNK = 200  # keys per statement

_TAKE = (
    "INSERT INTO leases (kind, key, holder, expires_at) VALUES {rows} "
    "ON CONFLICT (kind, key) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at "
    "WHERE leases.holder = excluded.holder OR leases.expires_at < ?"
)
_UNFINISHED_SIBLING = (
    "SELECT 1 FROM jobs AS sibling WHERE jobs.batch_id IS NOT NULL AND sibling.batch_id = jobs.batch_id "
    "AND sibling.status IN ('queued', 'submitted', 'running')"
)


def _placeholders(count: int) -> str:
    return ", ".join("?" for _ in range(count))


class LeasesRepo:
    def __init__(self, db: Backend) -> None:
        self._db = db

    async def take(self, kind: str, keys: Iterable[str], *, holder: str, until: float, now: float) -> set[str]:
        """Take (or renew) the leases of ``keys`` for ``holder`` until ``until``: those absent, already the
        holder's, or expired before ``now``. Returns the keys the holder now holds."""
        # In one order, so processes taking overlapping keys lock their rows in the same order (no deadlock).
        ordered = sorted(set(keys))
        won: set[str] = set()
        for start in range(0, len(ordered), _CHUNK):
            chunk = ordered[start : start + _CHUNK]
            rows = ", ".join("(?, ?, ?, ?)" for _ in chunk)
            values = [value for key in chunk for value in (kind, key, holder, until)]
            changed = await self._db.write(_TAKE.format(rows=rows), (*values, now))  # placeholders only
            if changed == len(chunk):
                won.update(chunk)
            elif changed:
                won.update(await self._held(kind, chunk, holder))
        return won

    async def renew(self, kind: str, keys: Iterable[str], *, holder: str, until: float) -> set[str]:
        """Extend ``holder``'s own leases of ``keys`` to ``until``; returns those it still holds (a lease given up,
        or taken by another process, is not made again)."""
        ordered = sorted(set(keys))
        kept: set[str] = set()
        for start in range(0, len(ordered), _CHUNK):
            chunk = ordered[start : start + _CHUNK]
            changed = await self._db.write(
                "UPDATE leases SET expires_at = ? "  # noqa: S608 - placeholders only
                f"WHERE kind = ? AND holder = ? AND key IN ({_placeholders(len(chunk))})",
                (until, kind, holder, *chunk),
            )
            if changed == len(chunk):
                kept.update(chunk)
            elif changed:
                kept.update(await self._held(kind, chunk, holder))
        return kept

    async def _held(self, kind: str, keys: Sequence[str], holder: str) -> set[str]:
        rows = await self._db.read(
            f"SELECT key FROM leases WHERE kind = ? AND holder = ? AND key IN ({_placeholders(len(keys))})",  # noqa: S608
            (kind, holder, *keys),
        )
        return {str(row[0]) for row in rows}

    async def holder_of(self, kind: str, key: str, *, now: float) -> str | None:
        """Who holds the lease now (None: nobody, or it has expired)."""
        row = await self._db.read_one(
            "SELECT holder FROM leases WHERE kind = ? AND key = ? AND expires_at >= ?", (kind, key, now)
        )
        return None if row is None else str(row[0])

    async def release(self, kind: str, key: str, *, holder: str) -> bool:
        """Give up a lease (only the holder's own): another process may take it at once."""
        return (
            await self._db.write("DELETE FROM leases WHERE kind = ? AND key = ? AND holder = ?", (kind, key, holder))
            > 0
        )

    async def release_all(self, holder: str) -> int:
        """Give up every lease of ``holder`` (a clean stop: the others take its jobs over at once)."""
        return await self._db.write("DELETE FROM leases WHERE holder = ?", (holder,))

    async def clear_except(self, holder_prefix: str) -> int:
        """Forget every lease but those whose holder starts with ``holder_prefix`` (SQLite's one bot process,
        starting: every other lease is its previous run's)."""
        return await self._db.write("DELETE FROM leases WHERE holder NOT LIKE ?", (holder_prefix + "%",))

    async def prune(self, *, expired_before: float) -> int:
        """Delete leases that expired before ``expired_before`` (a taken expired lease and an absent one are the
        same to every taker: this only keeps the table small)."""
        return await self._db.write("DELETE FROM leases WHERE expires_at < ?", (expired_before,))

    # -- work whose process is gone -----------------------------------------------------------------------

    async def unleased_at_provider(
        self, kinds: Sequence[str], providers: Sequence[str], *, now: float, limit: int
    ) -> list[Job]:
        """Jobs of ``providers`` at their provider (submitted or running) that no live lease of ``kinds`` covers."""
        if not providers or not kinds:
            return []
        rows = await self._db.read(
            "SELECT * FROM jobs WHERE status IN ('submitted', 'running') "  # noqa: S608 - placeholders only
            f"AND provider IN ({_placeholders(len(providers))}) "
            f"AND NOT EXISTS (SELECT 1 FROM leases WHERE leases.kind IN ({_placeholders(len(kinds))}) "
            "AND leases.key = jobs.id AND leases.expires_at >= ?) ORDER BY created_at LIMIT ?",
            (*providers, *kinds, now, limit),
        )
        return [_row_to_job(row) for row in rows]

    async def undelivered(self, kind: str, *, now: float, quiet_since: float, limit: int) -> list[Job]:
        """Finished jobs (succeeded) not changed since ``quiet_since`` whose card no live ``kind`` lease covers
        and has no variation still being made: one job per card."""
        rows = await self._db.read(
            "SELECT * FROM jobs WHERE status = 'succeeded' AND updated_at < ? "  # noqa: S608 - fixed fragments only
            "AND NOT EXISTS (SELECT 1 FROM leases WHERE leases.kind = ? "
            "AND leases.key = COALESCE(jobs.batch_id, jobs.id) AND leases.expires_at >= ?) "
            f"AND NOT EXISTS ({_UNFINISHED_SIBLING}) ORDER BY created_at LIMIT ?",
            (quiet_since, kind, now, limit),
        )
        cards: dict[str, Job] = {}
        for row in rows:
            job = _row_to_job(row)
            cards.setdefault(job.card_key, job)
        return list(cards.values())
