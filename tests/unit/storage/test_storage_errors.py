"""Storage trouble on real SQLite files: another connection's write lock, a database that may not grow.

A refused write is a :class:`StorageError` with a message for users, nothing of it is stored, ``ping`` (so
/healthz) reports it until a write works again, and a batch of jobs is stored whole or not at all.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from bot.errors import StorageBusyError, StorageFullError
from bot.records import JobOrigin, JobStatus
from bot.storage.db import Database
from bot.storage.job_rows import NewJob
from bot.storage.jobs_repo import JobsRepo

ORIGIN = JobOrigin(user_id=42, guild_id=1, channel_id=2)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(tmp_path / "a.sqlite3", busy_timeout_ms=50)
    await database.open()
    yield database
    await database.close()


@contextmanager
def write_lock(path: Path) -> Iterator[sqlite3.Connection]:
    """Another program inside ``BEGIN IMMEDIATE`` on the same file; it commits its own change at the end."""
    with closing(sqlite3.connect(path, isolation_level=None, check_same_thread=False)) as other:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO webhook_events (webhook_id, received_at) VALUES ('operator', 1.0)")
        yield other
        other.execute("COMMIT")


def new_job(job_id: str, prompt: str = "lofi") -> NewJob:
    return NewJob(
        job_id=job_id,
        origin=ORIGIN,
        provider="replicate",
        model="musicgen",
        model_ref="meta/musicgen",
        request={"prompt": prompt},
        input={"prompt": prompt, "duration": 8},
    )


async def status_of(repo: JobsRepo, job_id: str) -> JobStatus:
    job = await repo.get(job_id)
    assert job is not None
    return job.status


async def test_a_write_locked_past_the_busy_timeout_is_refused_clearly_then_works(db: Database) -> None:
    repo = JobsRepo(db)
    [job] = await repo.insert_many([new_job("job1")])
    with write_lock(db.path):
        with pytest.raises(StorageBusyError) as refused:
            await repo.transition(job.id, JobStatus.SUBMITTED)
        assert refused.value.user_message == "Encore's storage is busy right now. Please try again in a minute."
        assert isinstance(refused.value.__cause__, sqlite3.OperationalError)  # the detail stays in the logs
        assert await status_of(repo, job.id) == JobStatus.QUEUED  # reads go on
        with pytest.raises(StorageBusyError):
            await db.ping()
    assert await repo.transition(job.id, JobStatus.SUBMITTED)
    await db.ping()  # a write worked: healthy again
    assert db.write_problem is None


async def test_a_batch_is_stored_whole_or_not_at_all(db: Database) -> None:
    repo = JobsRepo(db)
    with write_lock(db.path), pytest.raises(StorageBusyError):
        await repo.insert_many([new_job(f"job{i}") for i in range(3)])
    assert await repo.list_active() == []
    stored = await repo.insert_many([new_job(f"job{i}") for i in range(3)])
    assert [job.id for job in stored] == ["job0", "job1", "job2"]


async def test_a_database_that_may_not_grow_refuses_with_sqlite_full(db: Database) -> None:
    repo = JobsRepo(db)
    [row] = await db.read("PRAGMA page_count")
    await db.read(f"PRAGMA max_page_count = {int(row[0])}")
    accepted, refused = 0, None
    while refused is None and accepted < 100:
        try:
            await repo.insert_many([new_job(f"job{accepted}", prompt="x" * 500)])
            accepted += 1
        except StorageFullError as exc:
            refused = exc
    assert refused is not None
    assert refused.user_message == "Encore's storage is full; an operator has been told. Please try again later."
    assert "database or disk is full" in str(refused)
    assert len(await repo.list_active()) == accepted  # the refused one left nothing
    with pytest.raises(StorageFullError):
        await db.ping()
    with closing(sqlite3.connect(db.path)) as check:
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


async def test_a_bug_is_not_mistaken_for_storage_trouble(db: Database) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        await db.write("INSERT INTO webhook_events (webhook_id, received_at) VALUES (NULL, NULL)")
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        await db.write("DELETE FROM nothing_here")
    assert db.write_problem is None


async def test_a_write_waiting_for_the_lock_survives_the_other_program_committing(db: Database) -> None:
    """With a read going on beside it, a write that waits for another program's lock still goes through
    when that program commits: no statement is left open (holding an old snapshot) across an await."""
    repo = JobsRepo(db)
    database = Database(db.path, busy_timeout_ms=5000)  # long enough to wait the lock out
    await database.open()
    try:
        slow = JobsRepo(database)
        [job] = await slow.insert_many([new_job("job1")])
        loop = asyncio.get_running_loop()
        writing = asyncio.Event()

        def traced(sql: str) -> None:
            if sql.startswith("UPDATE"):
                loop.call_soon_threadsafe(writing.set)

        await database.conn.set_trace_callback(traced)
        with write_lock(db.path):
            # The read and the write are queued together on the connection's thread, the read first.
            both = asyncio.gather(slow.get(job.id), slow.transition(job.id, JobStatus.SUBMITTED))
            async with asyncio.timeout(10):
                await writing.wait()
        found, moved = await both  # the lock's owner committed its change while the write waited
        assert found is not None
        assert moved
        assert await status_of(repo, job.id) == JobStatus.SUBMITTED
    finally:
        await database.close()
