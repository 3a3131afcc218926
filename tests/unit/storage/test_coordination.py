"""What several processes sharing a database coordinate through it: named locks held to the end of a
transaction, and rate limits kept in the database. On SQLite and a real PostgreSQL; several "processes" are
several backend objects (their own connection, or pool) on one database."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from bot.errors import StorageBusyError
from bot.providers.ratelimit import RateLimit, SharedOrLocal
from bot.records import JobOrigin, JobStatus
from bot.storage.backend import Backend, lock_key
from bot.storage.instances_repo import InstancesRepo
from bot.storage.job_rows import NewJob
from bot.storage.jobs_repo import JobsRepo
from bot.storage.rate_limits import SharedRateLimit
from tests.conftest import StorageBackend


@pytest.fixture
async def databases(backend: StorageBackend, tmp_path: Path) -> AsyncIterator[list[Backend]]:
    """Three processes' handles on one database (opened; the first migrated it)."""
    opened: list[Backend] = []
    for _ in range(3):
        database = backend.database(tmp_path / "shared.sqlite3")
        await database.open()
        opened.append(database)
    yield opened
    for database in opened:
        await database.close()


def test_lock_keys_are_stable_64_bit_numbers() -> None:
    # Every process and every release must derive the same key from a name: pinned.
    assert lock_key(("user", 42)) == lock_key(("user", 42)) == 1517660705263336311
    assert lock_key(("guild", 42)) != lock_key(("user", 42)) != lock_key(("user", "42x"))
    assert all(-(2**63) <= lock_key(("user", n)) < 2**63 for n in (0, 2**63 - 1))


@pytest.mark.both_backends
async def test_a_lock_is_taken_only_inside_a_transaction(databases: list[Backend]) -> None:
    db = databases[0]
    with pytest.raises(RuntimeError, match="inside transaction"):
        await db.lock(("user", 1))
    async with db.transaction():
        await db.lock(("user", 1), ("guild", 2), ("user", 1))  # twice the same name is one lock
        await db.lock(("user", 1))  # and taking it again in the same transaction doesn't wait


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_a_name_is_held_to_the_end_of_the_transaction_and_others_go_on(
    databases: list[Backend], backend: StorageBackend
) -> None:
    first, second, third = databases
    journal: list[str] = []
    holding, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with first.transaction():
            await first.lock(("user", 1))
            journal.append("first has user 1")
            holding.set()
            await release.wait()
            journal.append("first ends")

    async def wait_for_it() -> None:
        async with second.transaction():
            await second.lock(("user", 1), ("guild", 5))
            journal.append("second has user 1")

    holder = asyncio.create_task(hold())
    await holding.wait()
    waiter = asyncio.create_task(wait_for_it())
    async with third.transaction():  # another name: not held up
        await third.lock(("user", 2), ("guild", 5))
    assert backend.url is not None
    operator = await asyncpg.connect(backend.url)
    try:
        high, low = divmod(lock_key(("user", 1)) & (2**64 - 1), 2**32)
        async with asyncio.timeout(10):  # the server shows the second waiting for the first's lock
            query = "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = $1 AND objid = $2"
            while await operator.fetchval(query, high, low) is None:  # noqa: ASYNC110 - no event to await
                await asyncio.sleep(0.01)
    finally:
        await operator.close()
    release.set()
    await asyncio.gather(holder, waiter)
    assert journal == ["first has user 1", "first ends", "second has user 1"]


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_names_taken_in_any_order_never_deadlock(databases: list[Backend]) -> None:
    first, second, _ = databases

    async def both(db: Backend, *names: tuple[str, int]) -> None:
        async with db.transaction():
            await db.lock(*names)
            await asyncio.sleep(0)  # (let the other run between)

    for _ in range(50):  # a circle would be refused as busy (deadlock_detected) within a second
        await asyncio.gather(
            both(first, ("user", 1), ("guild", 1)),
            both(second, ("guild", 1), ("user", 1)),
        )


# -- rate limits kept in the database ---------------------------------------------------------------------


@pytest.mark.both_backends
async def test_a_shared_rate_limit_is_one_budget_for_every_process(databases: list[Backend]) -> None:
    per_minute, burst, calls = 1200, 10, 40
    rate = (per_minute - burst) / 60.0
    limits = [SharedRateLimit(db, "account:create", per_minute, burst=burst) for db in databases]
    granted: list[float] = []

    async def call(limit: SharedRateLimit) -> None:
        await limit.acquire()
        granted.append(time.monotonic())

    started = time.monotonic()
    await asyncio.gather(*(call(limits[n % 3]) for n in range(calls)))
    # Three buckets of their own would let all forty through at once; the one shared bucket takes the burst,
    # then refills at its rate, whichever process asks.
    for made, at in enumerate(sorted(granted), start=1):
        assert made <= burst + rate * (at - started) + 1, f"{made} calls {at - started:.2f} s in"
    assert time.monotonic() - started >= (calls - burst - 1) / rate
    other = SharedRateLimit(databases[0], "another:account", per_minute, burst=burst)
    before = time.monotonic()
    for _ in range(burst):
        await other.acquire()  # another key is another budget, full
    assert time.monotonic() - before < (burst - 1) / rate


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_a_shared_limit_the_database_refuses_counts_alone_meanwhile(
    backend: StorageBackend, tmp_path: Path
) -> None:
    assert backend.url is not None
    db = backend.database(tmp_path / "unused", busy_timeout_ms=100)
    await db.open()
    operator = await asyncpg.connect(backend.url)
    try:
        shared = SharedRateLimit(db, "account:requests", 600, burst=5)
        limit = SharedOrLocal(shared, RateLimit(600, burst=5), what="account:requests")
        await limit.acquire()  # the row exists now
        async with operator.transaction():
            await operator.execute("LOCK TABLE rate_limits IN EXCLUSIVE MODE")  # another program holds it
            with pytest.raises(StorageBusyError):
                await shared.acquire()
            async with asyncio.timeout(5):
                await limit.acquire()  # the call goes out all the same, counted by this process
        now = await db.read_one(f"SELECT {db.dialect.now_s}")
        assert now is not None
        await limit.acquire()  # and once the database answers, it is counted there again
        row = await db.read_one("SELECT updated_at FROM rate_limits WHERE key = 'account:requests'")
        assert row is not None
        assert float(row[0]) >= float(now[0])
    finally:
        await operator.close()
        await db.close()


# -- bookkeeping says nothing of health ---------------------------------------------------------------------


@contextlib.asynccontextmanager
async def jobs_locked_by_another_program(backend: StorageBackend, path: Path) -> AsyncIterator[None]:
    """Another program holds the jobs' writes: SQLite's write lock (the whole file), or PostgreSQL's table lock."""
    if backend.url is None:
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            other.execute("BEGIN IMMEDIATE")
            yield
            other.execute("ROLLBACK")
        finally:
            other.close()
        return
    operator = await asyncpg.connect(backend.url)
    try:
        async with operator.transaction():
            await operator.execute("LOCK TABLE jobs IN EXCLUSIVE MODE")
            yield
    finally:
        await operator.close()


@pytest.mark.both_backends
async def test_a_heartbeat_or_a_write_that_changes_nothing_never_makes_a_refusing_database_healthy(
    backend: StorageBackend, tmp_path: Path
) -> None:
    path = tmp_path / "health.sqlite3"
    db = backend.database(path, busy_timeout_ms=100)
    await db.open()
    try:
        repo, instances = JobsRepo(db), InstancesRepo(db)
        [job] = await repo.insert_many([NewJob("job1", JobOrigin(user_id=1), "replicate", "musicgen", "m", {}, {})])
        async with jobs_locked_by_another_program(backend, path):
            with pytest.raises(StorageBusyError):
                await repo.transition(job.id, JobStatus.SUBMITTED)
            if backend.url is not None:  # (PostgreSQL's other tables take writes meanwhile)
                await instances.beat("me")
                assert await repo.prune_webhooks(older_than=0.0) == 0  # works, and changes nothing
            with pytest.raises(StorageBusyError):
                await db.ping()  # /healthz: unhealthy while the jobs' writes are refused
        await instances.beat("me")  # the heartbeat works again: bookkeeping, not evidence
        assert not await repo.transition(job.id, JobStatus.RUNNING)  # a write that changed nothing
        with pytest.raises(StorageBusyError):
            await db.ping()
        assert await repo.transition(job.id, JobStatus.SUBMITTED)  # a job's write went through
        await db.ping()
    finally:
        await db.close()
