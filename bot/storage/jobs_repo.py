"""SQL for the ``jobs`` and ``webhook_events`` tables. Every state change is a conditional UPDATE.

How a job maps to a row is in ``job_rows``; the counts for metrics and ``db stats`` in ``stats_repo``."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.records import (
    ALLOWED_FROM,
    STATUS_TIME_COLUMN,
    TERMINAL,
    Job,
    JobOrigin,
    JobStatus,
)
from bot.storage.backend import Backend, LockName
from bot.storage.job_rows import _INSERT, _INSERT_ROW, _UPDATABLE, NewJob, _row_to_job


@dataclass(frozen=True)
class Usage:
    user_in_flight: int  # requests (a batch of variations is one)
    user_jobs: int
    user_audio_s: float
    user_last_at: float | None
    guild_jobs: int
    guild_audio_s: float
    guild_cost_usd: float
    total_cost_usd: float


class JobsRepo:
    def __init__(self, db: Backend) -> None:
        self._db = db

    async def insert(
        self,
        *,
        job_id: str,
        origin: JobOrigin,
        provider: str,
        model: str,
        model_ref: str,
        request: Mapping[str, Any],
        input: Mapping[str, Any],
        now: float | None = None,
        batch: tuple[str, int, int] | None = None,
        callback_token: str | None = None,
        input_files: Mapping[str, str] | None = None,
        cost_usd: float = 0.0,
    ) -> Job:
        """Insert a queued job. ``batch`` is (batch id, index, size) for one of several variations."""
        [job] = await self.insert_many(
            [
                NewJob(
                    job_id=job_id,
                    origin=origin,
                    provider=provider,
                    model=model,
                    model_ref=model_ref,
                    request=request,
                    input=input,
                    batch=batch,
                    callback_token=callback_token,
                    input_files=input_files,
                    cost_usd=cost_usd,
                )
            ],
            now=now,
        )
        return job

    @contextlib.asynccontextmanager
    async def admitting(self, *, user_id: int, guild_id: int | None, everyone: bool = False) -> AsyncIterator[None]:
        """One admission: every read and write in the block (the quotas read, the jobs inserted) is one
        transaction, and it runs alone for this person and this server (and for everyone with ``everyone``: an
        Encore-wide budget applies), in every process sharing the database, so the usage it reads can't change
        before its insert commits. An exception (or a lost connection) rolls it all back."""
        names: list[LockName] = [("user", user_id)]
        if guild_id is not None:
            names.append(("guild", guild_id))
        if everyone:
            names.append(("everyone", 0))
        async with self._db.transaction():
            await self._db.lock(*names)
            yield

    async def insert_many(self, jobs: Sequence[NewJob], *, now: float | None = None) -> list[Job]:
        """Insert queued jobs in one statement: every variation of a batch is stored, or none is."""
        now = time.time() if now is None else now
        rows = ", ".join(f"({_INSERT_ROW})" for _ in jobs)
        values = [value for job in jobs for value in job.values(now)]
        await self._db.write(_INSERT + rows, values)  # only placeholders are spliced in
        stored = []
        for job in jobs:
            found = await self.get(job.job_id)
            assert found is not None
            stored.append(found)
        return stored

    async def get(self, job_id: str) -> Job | None:
        row = await self._db.read_one("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _row_to_job(row) if row else None

    async def get_by_prediction(self, prediction_id: str) -> Job | None:
        row = await self._db.read_one("SELECT * FROM jobs WHERE prediction_id = ?", (prediction_id,))
        return _row_to_job(row) if row else None

    async def list_batch(self, batch_id: str) -> list[Job]:
        rows = await self._db.read("SELECT * FROM jobs WHERE batch_id = ? ORDER BY batch_index", (batch_id,))
        return [_row_to_job(row) for row in rows]

    async def moved_on(self, jobs: Sequence[Job]) -> bool:
        """Whether any of ``jobs`` (a card's: one job, or a whole batch) is in another state in the database now."""
        ids = [job.id for job in jobs]
        placeholders = ", ".join("?" for _ in ids)
        rows = await self._db.read(f"SELECT id, status FROM jobs WHERE id IN ({placeholders})", tuple(ids))  # noqa: S608
        return {str(row[0]): str(row[1]) for row in rows} != {job.id: str(job.status) for job in jobs}

    async def set_input(self, job_id: str, input: Mapping[str, Any]) -> bool:
        """Replace a queued job's provider input (after its files were uploaded)."""
        changed = await self._db.write(
            "UPDATE jobs SET input_json = ?, updated_at = ? WHERE id = ? AND status = 'queued'",
            (json.dumps(dict(input)), time.time(), job_id),
        )
        return changed == 1

    async def list_active(self) -> list[Job]:
        """Every job that has not reached a terminal state, oldest first."""
        rows = await self._db.read(
            "SELECT * FROM jobs WHERE status NOT IN ('delivered', 'failed', 'canceled') ORDER BY created_at"
        )
        return [_row_to_job(row) for row in rows]

    async def list_cards_behind(self) -> list[Job]:
        """Finished jobs from Discord whose card may not show how they ended yet, one job per card."""
        rows = await self._db.read(
            "SELECT * FROM jobs WHERE status IN ('delivered', 'failed', 'canceled') AND card_final_at IS NULL "
            "AND batch_index = 0 AND (card_message_id IS NOT NULL OR interaction_id IS NOT NULL) ORDER BY created_at"
        )
        return [_row_to_job(row) for row in rows]

    async def mark_card_final(self, job_ids: Sequence[str], *, now: float | None = None) -> None:
        """The card of these finished jobs shows how they ended."""
        if not job_ids:
            return
        placeholders = ", ".join("?" for _ in job_ids)
        await self._db.write(
            f"UPDATE jobs SET card_final_at = ? WHERE id IN ({placeholders}) "  # noqa: S608 - placeholders only
            "AND status IN ('delivered', 'failed', 'canceled')",
            (time.time() if now is None else now, *job_ids),
        )

    async def list_for_user(self, user_id: int, *, active_only: bool = False, limit: int = 25) -> list[Job]:
        sql = "SELECT * FROM jobs WHERE user_id = ?"
        if active_only:
            sql += " AND status NOT IN ('delivered', 'failed', 'canceled')"
        sql += " ORDER BY created_at DESC LIMIT ?"
        rows = await self._db.read(sql, (user_id, limit))
        return [_row_to_job(row) for row in rows]

    async def transition(
        self,
        job_id: str,
        to: JobStatus,
        *,
        expect_from: Iterable[JobStatus] | None = None,
        now: float | None = None,
        **fields: Any,
    ) -> bool:
        """Move a job to ``to`` if it is in an allowed state. True only if this call made the move.

        ``expect_from`` narrows the allowed from-states further (never widens them).
        """
        allowed = ALLOWED_FROM[to]
        if expect_from is not None:
            allowed = allowed & frozenset(expect_from)
        if not allowed:
            return False
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        now = time.time() if now is None else now
        assignments = ["status = ?", f"{STATUS_TIME_COLUMN[to]} = ?", "updated_at = ?"]
        values: list[Any] = [to.value, now, now]
        for column, value in fields.items():
            assignments.append(f"{column} = ?")
            values.append(value)
        placeholders = ", ".join("?" for _ in allowed)
        sql = f"UPDATE jobs SET {', '.join(assignments)} WHERE id = ? AND status IN ({placeholders})"  # noqa: S608
        changed = await self._db.write(sql, (*values, job_id, *(s.value for s in allowed)))
        return changed == 1

    async def update_fields(
        self, job_id: str, *, when_status: Iterable[JobStatus], when_claimed_by: str | None = None, **fields: Any
    ) -> bool:
        """Set fields without changing status, only while the job is in one of ``when_status`` (and, with
        ``when_claimed_by``, while that process holds its turn: another may have taken it over)."""
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        statuses = [s.value for s in when_status]
        assignments = [f"{column} = ?" for column in fields] + ["updated_at = ?"]
        placeholders = ", ".join("?" for _ in statuses)
        sql = f"UPDATE jobs SET {', '.join(assignments)} WHERE id = ? AND status IN ({placeholders})"  # noqa: S608
        values = [*fields.values(), time.time(), job_id, *statuses]
        if when_claimed_by is not None:
            sql += " AND claimed_by = ?"
            values.append(when_claimed_by)
        changed = await self._db.write(sql, values)
        return changed == 1

    async def replace_prediction(self, job_id: str, *, old: str | None, new: str) -> bool:
        """Swap the prediction id (a resubmission) if the job still holds ``old`` and is active."""
        changed = await self._db.write(
            "UPDATE jobs SET prediction_id = ?, attempts = attempts + 1, updated_at = ? "
            "WHERE id = ? AND prediction_id IS NOT DISTINCT FROM ? AND status IN ('submitted', 'running')",
            (new, time.time(), job_id, old),
        )
        return changed == 1

    async def count_delivery_attempt(self, job_id: str) -> int:
        """Record one more delivery attempt for a succeeded job; returns the new count (0 if not succeeded)."""
        # Two statements, not one with RETURNING, whose write would stay open until its row is read: one
        # delivery loop per job runs at a time, so nobody counts in between.
        changed = await self._db.write(
            "UPDATE jobs SET delivery_attempts = delivery_attempts + 1, updated_at = ? "
            "WHERE id = ? AND status = 'succeeded'",
            (time.time(), job_id),
        )
        if changed == 0:
            return 0
        row = await self._db.read_one("SELECT delivery_attempts FROM jobs WHERE id = ?", (job_id,))
        return int(row[0]) if row else 0

    async def page_for_user(self, user_id: int, *, page: int, per_page: int) -> tuple[list[Job], int]:
        """One page of a user's jobs, newest first (one row per batch), and how many there are in all."""
        where = "user_id = ? AND batch_index = 0"
        row = await self._db.read_one(f"SELECT COUNT(*) FROM jobs WHERE {where}", (user_id,))  # noqa: S608
        total = int(row[0]) if row else 0
        rows = await self._db.read(
            f"SELECT * FROM jobs WHERE {where} ORDER BY created_at DESC LIMIT ? OFFSET ?",  # noqa: S608
            (user_id, per_page, page * per_page),
        )
        return [_row_to_job(r) for r in rows], total

    async def children(self, job_id: str) -> list[Job]:
        """Jobs that continued ``job_id`` (its lineage, read from each job's stored request), oldest first."""
        sql = self._db.dialect
        rows = await self._db.read(
            f"SELECT * FROM jobs WHERE {sql.json_text('request_json', 'context', 'parent')} = ? "  # noqa: S608
            f"AND {sql.json_text('request_json', 'context', 'kind')} = 'continuation' ORDER BY created_at",
            (job_id,),
        )
        return [_row_to_job(r) for r in rows]

    async def for_message(self, message_id: int, *, channel_id: int) -> list[Job]:
        """The jobs whose audio was delivered as, or whose card is, message ``message_id`` in ``channel_id``."""
        rows = await self._db.read(
            "SELECT * FROM jobs WHERE (delivery_message_id = ? OR card_message_id = ?) AND channel_id = ? "
            "ORDER BY batch_index",
            (message_id, message_id, channel_id),
        )
        return [_row_to_job(r) for r in rows]

    async def usage(self, *, user_id: int, guild_id: int | None, since: float) -> Usage:
        """What a user, their guild and everyone have used since ``since``. Failed and canceled jobs don't count
        against the quotas; what a job that ran cost (it has an output) counts against the budgets even if it
        failed after (it was paid for: say a song not posted because it is explicit)."""
        counted = "status NOT IN ('failed', 'canceled')"
        spent = "(status NOT IN ('failed', 'canceled') OR succeeded_at IS NOT NULL)"
        seconds = f"COALESCE(SUM({self._db.dialect.json_number('request_json', 'duration_s')}), 0)"
        sql = f"""
            SELECT
              (SELECT COUNT(DISTINCT COALESCE(batch_id, id)) FROM jobs WHERE user_id = :user
                 AND status IN ('queued', 'submitted', 'running', 'succeeded')),
              (SELECT COUNT(*) FROM jobs WHERE user_id = :user AND created_at >= :since AND {counted}),
              (SELECT {seconds} FROM jobs WHERE user_id = :user AND created_at >= :since AND {counted}),
              (SELECT MAX(created_at) FROM jobs WHERE user_id = :user),
              (SELECT COUNT(*) FROM jobs WHERE guild_id = :guild AND created_at >= :since AND {counted}),
              (SELECT {seconds} FROM jobs WHERE guild_id = :guild AND created_at >= :since AND {counted}),
              (SELECT COALESCE(SUM(cost_usd), 0) FROM jobs WHERE guild_id = :guild
                 AND created_at >= :since AND {spent}),
              (SELECT COALESCE(SUM(cost_usd), 0) FROM jobs WHERE created_at >= :since AND {spent})
        """  # noqa: S608 - only fixed fragments are spliced in
        row = await self._db.read_one(sql, {"user": user_id, "guild": guild_id, "since": since})
        assert row is not None
        return Usage(
            user_in_flight=int(row[0]),
            user_jobs=int(row[1]),
            user_audio_s=float(row[2]),
            user_last_at=float(row[3]) if row[3] is not None else None,
            guild_jobs=int(row[4]),
            guild_audio_s=float(row[5]),
            guild_cost_usd=float(row[6]),
            total_cost_usd=float(row[7]),
        )

    async def typical_run_s(self, model: str) -> float | None:
        """How long the model's recent jobs took from submission to their output (mean of the last 20)."""
        row = await self._db.read_one(
            "SELECT AVG(succeeded_at - submitted_at) FROM (SELECT succeeded_at, submitted_at FROM jobs "
            "WHERE model = ? AND succeeded_at IS NOT NULL AND submitted_at IS NOT NULL "
            "ORDER BY succeeded_at DESC LIMIT 20) AS recent",
            (model,),
        )
        return float(row[0]) if row and row[0] is not None else None

    # -- webhook redelivery guard ------------------------------------------------------------

    async def remember_webhook(self, webhook_id: str, *, now: float | None = None) -> bool:
        """Record a webhook id; False if it was seen before (a redelivery)."""
        now = time.time() if now is None else now
        changed = await self._db.write(
            "INSERT INTO webhook_events (webhook_id, received_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (webhook_id, now),
        )
        return changed == 1

    async def forget_webhook(self, webhook_id: str) -> None:
        """Undo :meth:`remember_webhook` when handling failed, so the provider's retry is not dropped."""
        await self._db.write("DELETE FROM webhook_events WHERE webhook_id = ?", (webhook_id,))

    async def prune_webhooks(self, older_than: float) -> int:
        return await self._db.write("DELETE FROM webhook_events WHERE received_at < ?", (older_than,))

    # -- retention ---------------------------------------------------------------------------

    async def paths_in_use(self, *, made_since: float) -> set[str]:
        """Every file a job still needs: those of jobs made since ``made_since`` and of unfinished jobs
        (including the track an unfinished continuation will be stitched onto)."""
        rows = await self._db.read(
            "SELECT status, output_path, image_path, input_files_json, result_json, request_json FROM jobs "
            "WHERE created_at >= ? OR status NOT IN ('delivered', 'failed', 'canceled')",
            (made_since,),
        )
        paths: set[str] = set()
        for status, output_path, image_path, input_files_json, result_json, request_json in rows:
            paths.update(p for p in (output_path, image_path) if p)
            paths.update(str(p) for p in json.loads(input_files_json).values())
            paths.update(str(f["path"]) for f in json.loads(result_json).get("files") or [] if f.get("path"))
            if status not in TERMINAL:
                source = (json.loads(request_json).get("context") or {}).get("stitch", {}).get("source")
                if source:
                    paths.add(str(source))
        return paths


__all__ = ["TERMINAL", "JobsRepo"]
