"""SQL for the ``jobs`` and ``webhook_events`` tables. Every state change is a conditional UPDATE."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import aiosqlite

from bot.jobs.models import (
    ALLOWED_FROM,
    STATUS_TIME_COLUMN,
    TERMINAL,
    Job,
    JobOrigin,
    JobStatus,
)
from bot.storage.db import Database

# Columns a transition may set besides status and its timestamp. Names are fixed here, never
# taken from callers' strings, so the SQL below stays free of injected identifiers.
_UPDATABLE = frozenset(
    {
        "prediction_id",
        "attempts",
        "error",
        "output_path",
        "output_size",
        "output_content_type",
        "delivery_message_id",
        "seed",
        "predict_time_s",
        "total_time_s",
        "card_message_id",
        "token_expires_at",
        "image_path",
        "callback_token",
        "result_json",
        "cost_usd",
    }
)

_INSERT = """
INSERT INTO jobs (id, user_id, guild_id, channel_id, interaction_id, token_expires_at, provider, model,
                  model_ref, request_json, input_json, status, created_at, updated_at,
                  batch_id, batch_index, batch_size, callback_token, input_files_json, card_message_id, cost_usd)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


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


class ActiveJob(NamedTuple):
    id: str
    model: str
    status: JobStatus
    created_at: float


def _row_to_job(row: aiosqlite.Row) -> Job:
    data = dict(row)
    data["request"] = json.loads(data.pop("request_json"))
    data["input"] = json.loads(data.pop("input_json"))
    data["input_files"] = json.loads(data.pop("input_files_json"))
    data["result"] = json.loads(data.pop("result_json"))
    return Job.model_validate(data)


class JobsRepo:
    def __init__(self, db: Database) -> None:
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
        now = time.time() if now is None else now
        await self._db.conn.execute(
            _INSERT,
            (
                job_id,
                origin.user_id,
                origin.guild_id,
                origin.channel_id,
                origin.interaction_id,
                origin.token_expires_at,
                provider,
                model,
                model_ref,
                json.dumps(dict(request)),
                json.dumps(dict(input)),
                now,
                now,
                *(batch or (None, 0, 1)),
                callback_token,
                json.dumps(dict(input_files or {})),
                origin.card_message_id,
                cost_usd,
            ),
        )
        job = await self.get(job_id)
        assert job is not None
        return job

    async def get(self, job_id: str) -> Job | None:
        async with self._db.conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)) as cursor:
            row = await cursor.fetchone()
        return _row_to_job(row) if row else None

    async def get_by_prediction(self, prediction_id: str) -> Job | None:
        async with self._db.conn.execute("SELECT * FROM jobs WHERE prediction_id = ?", (prediction_id,)) as cursor:
            row = await cursor.fetchone()
        return _row_to_job(row) if row else None

    async def list_batch(self, batch_id: str) -> list[Job]:
        async with self._db.conn.execute(
            "SELECT * FROM jobs WHERE batch_id = ? ORDER BY batch_index", (batch_id,)
        ) as cursor:
            rows = await cursor.fetchall()
        return [_row_to_job(row) for row in rows]

    async def set_input(self, job_id: str, input: Mapping[str, Any]) -> bool:
        """Replace a queued job's provider input (after its files were uploaded)."""
        cursor = await self._db.conn.execute(
            "UPDATE jobs SET input_json = ?, updated_at = ? WHERE id = ? AND status = 'queued'",
            (json.dumps(dict(input)), time.time(), job_id),
        )
        return cursor.rowcount == 1

    async def list_active(self) -> list[Job]:
        """Every job that has not reached a terminal state, oldest first."""
        async with self._db.conn.execute(
            "SELECT * FROM jobs WHERE status NOT IN ('delivered', 'failed', 'canceled') ORDER BY created_at"
        ) as cursor:
            rows = await cursor.fetchall()
        return [_row_to_job(row) for row in rows]

    async def list_for_user(self, user_id: int, *, active_only: bool = False, limit: int = 25) -> list[Job]:
        sql = "SELECT * FROM jobs WHERE user_id = ?"
        if active_only:
            sql += " AND status NOT IN ('delivered', 'failed', 'canceled')"
        sql += " ORDER BY created_at DESC LIMIT ?"
        async with self._db.conn.execute(sql, (user_id, limit)) as cursor:
            rows = await cursor.fetchall()
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
        cursor = await self._db.conn.execute(sql, (*values, job_id, *(s.value for s in allowed)))
        return cursor.rowcount == 1

    async def update_fields(self, job_id: str, *, when_status: Iterable[JobStatus], **fields: Any) -> bool:
        """Set fields without changing status, only while the job is in one of ``when_status``."""
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        statuses = [s.value for s in when_status]
        assignments = [f"{column} = ?" for column in fields] + ["updated_at = ?"]
        placeholders = ", ".join("?" for _ in statuses)
        sql = f"UPDATE jobs SET {', '.join(assignments)} WHERE id = ? AND status IN ({placeholders})"  # noqa: S608
        cursor = await self._db.conn.execute(sql, (*fields.values(), time.time(), job_id, *statuses))
        return cursor.rowcount == 1

    async def replace_prediction(self, job_id: str, *, old: str | None, new: str) -> bool:
        """Swap the prediction id (a resubmission) if the job still holds ``old`` and is active."""
        cursor = await self._db.conn.execute(
            "UPDATE jobs SET prediction_id = ?, attempts = attempts + 1, updated_at = ? "
            "WHERE id = ? AND prediction_id IS ? AND status IN ('submitted', 'running')",
            (new, time.time(), job_id, old),
        )
        return cursor.rowcount == 1

    async def count_delivery_attempt(self, job_id: str) -> int:
        """Record one more delivery attempt for a succeeded job; returns the new count (0 if not succeeded)."""
        async with self._db.conn.execute(
            "UPDATE jobs SET delivery_attempts = delivery_attempts + 1, updated_at = ? "
            "WHERE id = ? AND status = 'succeeded' RETURNING delivery_attempts",
            (time.time(), job_id),
        ) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def page_for_user(self, user_id: int, *, page: int, per_page: int) -> tuple[list[Job], int]:
        """One page of a user's jobs, newest first (one row per batch), and how many there are in all."""
        where = "user_id = ? AND batch_index = 0"
        async with self._db.conn.execute(f"SELECT COUNT(*) FROM jobs WHERE {where}", (user_id,)) as cursor:  # noqa: S608
            row = await cursor.fetchone()
        total = int(row[0]) if row else 0
        async with self._db.conn.execute(
            f"SELECT * FROM jobs WHERE {where} ORDER BY created_at DESC LIMIT ? OFFSET ?",  # noqa: S608
            (user_id, per_page, page * per_page),
        ) as cursor:
            rows = await cursor.fetchall()
        return [_row_to_job(r) for r in rows], total

    async def children(self, job_id: str) -> list[Job]:
        """Jobs that continued ``job_id`` (its lineage, read from each job's stored request), oldest first."""
        async with self._db.conn.execute(
            "SELECT * FROM jobs WHERE json_extract(request_json, '$.context.parent') = ? "
            "AND json_extract(request_json, '$.context.kind') = 'continuation' ORDER BY created_at",
            (job_id,),
        ) as cursor:
            rows = await cursor.fetchall()
        return [_row_to_job(r) for r in rows]

    async def usage(self, *, user_id: int, guild_id: int | None, since: float) -> Usage:
        """What a user, their guild and everyone have used since ``since`` (failed and canceled jobs don't count)."""
        counted = "status NOT IN ('failed', 'canceled')"
        seconds = "COALESCE(SUM(json_extract(request_json, '$.duration_s')), 0)"
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
                 AND created_at >= :since AND {counted}),
              (SELECT COALESCE(SUM(cost_usd), 0) FROM jobs WHERE created_at >= :since AND {counted})
        """  # noqa: S608 - only fixed fragments are spliced in
        async with self._db.conn.execute(sql, {"user": user_id, "guild": guild_id, "since": since}) as cursor:
            row = await cursor.fetchone()
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
        async with self._db.conn.execute(
            "SELECT AVG(succeeded_at - submitted_at) FROM (SELECT succeeded_at, submitted_at FROM jobs "
            "WHERE model = ? AND succeeded_at IS NOT NULL AND submitted_at IS NOT NULL "
            "ORDER BY succeeded_at DESC LIMIT 20)",
            (model,),
        ) as cursor:
            row = await cursor.fetchone()
        return float(row[0]) if row and row[0] is not None else None

    async def counts_by_status(self) -> dict[JobStatus, int]:
        async with self._db.conn.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status") as cursor:
            rows = await cursor.fetchall()
        return {JobStatus(row[0]): int(row[1]) for row in rows}

    async def counts_by_model_and_status(self) -> list[tuple[str, JobStatus, int]]:
        """How many jobs there are of each (model, status), for metrics and ``db stats``."""
        async with self._db.conn.execute(
            "SELECT model, status, COUNT(*) FROM jobs GROUP BY 1, 2 ORDER BY 1, 2"
        ) as cursor:
            rows = await cursor.fetchall()
        return [(str(row[0]), JobStatus(row[1]), int(row[2])) for row in rows]

    async def oldest_active(self) -> ActiveJob | None:
        """The unfinished job queued longest ago (few columns: this also reads databases of other versions)."""
        async with self._db.conn.execute(
            "SELECT id, model, status, created_at FROM jobs "
            "WHERE status NOT IN ('delivered', 'failed', 'canceled') ORDER BY created_at LIMIT 1"
        ) as cursor:
            row = await cursor.fetchone()
        return ActiveJob(str(row[0]), str(row[1]), JobStatus(row[2]), float(row[3])) if row else None

    # -- webhook redelivery guard ------------------------------------------------------------

    async def remember_webhook(self, webhook_id: str, *, now: float | None = None) -> bool:
        """Record a webhook id; False if it was seen before (a redelivery)."""
        now = time.time() if now is None else now
        cursor = await self._db.conn.execute(
            "INSERT OR IGNORE INTO webhook_events (webhook_id, received_at) VALUES (?, ?)", (webhook_id, now)
        )
        return cursor.rowcount == 1

    async def forget_webhook(self, webhook_id: str) -> None:
        """Undo :meth:`remember_webhook` when handling failed, so the provider's retry is not dropped."""
        await self._db.conn.execute("DELETE FROM webhook_events WHERE webhook_id = ?", (webhook_id,))

    async def prune_webhooks(self, older_than: float) -> int:
        cursor = await self._db.conn.execute("DELETE FROM webhook_events WHERE received_at < ?", (older_than,))
        return cursor.rowcount


__all__ = ["TERMINAL", "JobsRepo"]
