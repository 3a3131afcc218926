"""The job state machine in the database (SQLite and PostgreSQL): allowed moves apply, illegal ones are refused,
races have one winner."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import sqlite3

import asyncpg
import pytest

from bot.records import ALLOWED_FROM, TERMINAL, JobOrigin, JobStatus
from bot.storage.jobs_repo import JobsRepo

ALL = list(JobStatus)
pytestmark = pytest.mark.both_backends
# A broken constraint is a bug, not storage trouble: each backend raises its driver's own error.
INTEGRITY_ERRORS = (sqlite3.IntegrityError, asyncpg.IntegrityConstraintViolationError)


def interaction_id(job_id: str) -> int:
    """A fixed interaction id per job id (``hash()`` of a str changes between runs, and 16 bits of it collided)."""
    return int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:6], "big")


async def insert(repo: JobsRepo, job_id: str = "job1", user_id: int = 42) -> None:
    await repo.insert(
        job_id=job_id,
        origin=JobOrigin(user_id=user_id, guild_id=1, channel_id=2, interaction_id=interaction_id(job_id)),
        provider="replicate",
        model="musicgen",
        model_ref="meta/musicgen",
        request={"prompt": "lofi"},
        input={"prompt": "lofi", "duration": 8},
    )


async def force(repo: JobsRepo, job_id: str, status: JobStatus) -> None:
    """Walk a fresh job along legal moves to ``status``."""
    path = {
        JobStatus.QUEUED: [],
        JobStatus.SUBMITTED: [JobStatus.SUBMITTED],
        JobStatus.RUNNING: [JobStatus.SUBMITTED, JobStatus.RUNNING],
        JobStatus.SUCCEEDED: [JobStatus.SUBMITTED, JobStatus.RUNNING, JobStatus.SUCCEEDED],
        JobStatus.DELIVERED: [JobStatus.SUBMITTED, JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.DELIVERED],
        JobStatus.FAILED: [JobStatus.FAILED],
        JobStatus.CANCELED: [JobStatus.CANCELED],
    }[status]
    for step in path:
        assert await repo.transition(job_id, step)


@pytest.mark.parametrize(("source", "target"), list(itertools.product(ALL, ALL)))
async def test_every_move_is_applied_only_if_allowed(repo: JobsRepo, source: JobStatus, target: JobStatus) -> None:
    await insert(repo)
    await force(repo, "job1", source)
    before = await repo.get("job1")
    assert before is not None
    moved = await repo.transition("job1", target, now=before.updated_at + 5)
    after = await repo.get("job1")
    assert after is not None
    assert moved == (source in ALLOWED_FROM[target])
    if moved:
        assert after.status == target
        assert after.updated_at == before.updated_at + 5
    else:
        assert after == before  # refused: nothing changed


def test_terminal_states_never_change() -> None:
    for target, sources in ALLOWED_FROM.items():
        assert not (sources & TERMINAL), f"{target} may be reached from a terminal state"


async def test_each_status_records_its_time(repo: JobsRepo) -> None:
    await insert(repo)
    assert await repo.transition("job1", JobStatus.SUBMITTED, now=10.0, prediction_id="p1")
    assert await repo.transition("job1", JobStatus.RUNNING, now=11.0)
    assert await repo.transition("job1", JobStatus.SUCCEEDED, now=12.0, output_path="/x.wav", output_size=3)
    assert await repo.transition("job1", JobStatus.DELIVERED, now=13.0, delivery_message_id=99)
    job = await repo.get("job1")
    assert job is not None
    assert (job.submitted_at, job.running_at, job.succeeded_at, job.delivered_at) == (10.0, 11.0, 12.0, 13.0)
    assert (job.prediction_id, job.output_size, job.delivery_message_id) == ("p1", 3, 99)
    assert await repo.get_by_prediction("p1") == job


async def test_unknown_columns_are_refused(repo: JobsRepo) -> None:
    await insert(repo)
    with pytest.raises(ValueError, match="not updatable"):
        await repo.transition("job1", JobStatus.FAILED, status="delivered")


async def test_expect_from_narrows_but_never_widens(repo: JobsRepo) -> None:
    await insert(repo)
    assert not await repo.transition("job1", JobStatus.RUNNING, expect_from=[JobStatus.QUEUED])
    assert not await repo.transition("job1", JobStatus.SUBMITTED, expect_from=[JobStatus.RUNNING])
    assert await repo.transition("job1", JobStatus.SUBMITTED, expect_from=[JobStatus.QUEUED])


@pytest.mark.parametrize(
    "rivals",
    [
        (JobStatus.SUCCEEDED, JobStatus.CANCELED),
        (JobStatus.FAILED, JobStatus.CANCELED),
        (JobStatus.SUCCEEDED, JobStatus.SUCCEEDED),
        (JobStatus.CANCELED, JobStatus.CANCELED),
    ],
)
async def test_racing_moves_have_exactly_one_winner(repo: JobsRepo, rivals: tuple[JobStatus, JobStatus]) -> None:
    for n in range(20):
        job_id = f"race{n}"
        await insert(repo, job_id)
        await force(repo, job_id, JobStatus.RUNNING)
        results = await asyncio.gather(
            *(repo.transition(job_id, target, error=f"by {i}") for i, target in enumerate(rivals))
        )
        assert sum(results) == 1
        job = await repo.get(job_id)
        assert job is not None
        winner = results.index(True)
        assert (job.status, job.error) == (rivals[winner], f"by {winner}")


async def test_unique_interaction_and_prediction_ids(repo: JobsRepo) -> None:
    await insert(repo, "a")
    with pytest.raises(INTEGRITY_ERRORS):
        await insert(repo, "a")  # same id (and same interaction id)
    await insert(repo, "b")
    assert await repo.transition("a", JobStatus.SUBMITTED, prediction_id="p")
    with pytest.raises(INTEGRITY_ERRORS):
        await repo.transition("b", JobStatus.SUBMITTED, prediction_id="p")


async def test_webhook_ids_are_remembered_once(repo: JobsRepo) -> None:
    assert await repo.remember_webhook("msg_1", now=100.0)
    assert not await repo.remember_webhook("msg_1", now=101.0)
    await repo.forget_webhook("msg_1")
    assert await repo.remember_webhook("msg_1", now=102.0)
    assert await repo.prune_webhooks(older_than=103.0) == 1
    assert await repo.remember_webhook("msg_1")


async def test_delivery_attempts_count_only_while_succeeded(repo: JobsRepo) -> None:
    await insert(repo)
    assert await repo.count_delivery_attempt("job1") == 0
    await force(repo, "job1", JobStatus.SUCCEEDED)
    assert await repo.count_delivery_attempt("job1") == 1
    assert await repo.count_delivery_attempt("job1") == 2
