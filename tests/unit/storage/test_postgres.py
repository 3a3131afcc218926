"""The PostgreSQL backend against a real server (tests/postgres.py): migrations, and storage trouble met the way
an operator meets it (a lock held by another program, a serialization failure, too many connections, a killed
connection, a read-only server, a statement timeout, a full disk), each refused as the same StorageError SQLite's
would be; and a password that never shows."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from bot.errors import StartupError, StorageBusyError, StorageError, StorageFullError
from bot.logs import MASKER
from bot.records import JobOrigin, JobStatus
from bot.storage.backend import load_migrations
from bot.storage.job_rows import NewJob
from bot.storage.jobs_repo import JobsRepo
from bot.storage.postgres import PostgresDatabase
from bot.storage.postgres_values import storage_error
from tests.conftest import StorageBackend
from tests.faults._storage import mount_tmpfs
from tests.postgres import PostgresServer

BUSY = "Encore's storage is busy right now. Please try again in a minute."
FAILING = "Encore can't save anything right now; an operator has been told. Please try again later."
FULL = "Encore's storage is full; an operator has been told. Please try again later."


@pytest.fixture
def pg(postgres_server: PostgresServer) -> Iterator[StorageBackend]:
    """A fresh, migrated PostgreSQL database."""
    with postgres_server.fresh_database() as name:
        yield StorageBackend("postgres", postgres_server.url(name), postgres_server, name)


@pytest.fixture
async def db(pg: StorageBackend) -> AsyncIterator[PostgresDatabase]:
    assert pg.url is not None
    database = PostgresDatabase(pg.url, busy_timeout_ms=100)
    await database.open()
    yield database
    await database.close()


def new_job(job_id: str, user_id: int = 42) -> NewJob:
    return NewJob(
        job_id=job_id,
        origin=JobOrigin(user_id=user_id, guild_id=1, channel_id=2),
        provider="replicate",
        model="musicgen",
        model_ref="meta/musicgen",
        request={"prompt": "lofi"},
        input={"prompt": "lofi"},
    )


async def status_of(repo: JobsRepo, job_id: str) -> JobStatus:
    job = await repo.get(job_id)
    assert job is not None
    return job.status


# -- migrations -------------------------------------------------------------------------------------


def test_every_migration_has_a_postgres_twin() -> None:
    assert [m.name for m in load_migrations("postgres")] == [m.name for m in load_migrations("sqlite")]


async def test_the_two_schemas_have_the_same_tables_columns_and_indexes(pg: StorageBackend, tmp_path: Path) -> None:
    """Each migration's twin makes the same columns (name, kind of type, NOT NULL) and indexes."""
    kinds = {"INTEGER": "integer", "integer": "integer", "bigint": "integer"}
    kinds |= {"REAL": "number", "double precision": "number"}
    async with StorageBackend("sqlite").opened(tmp_path / "a.sqlite3") as lite:
        sqlite_columns = set()
        for (table,) in await lite.read("SELECT name FROM sqlite_master WHERE type = 'table'"):
            for row in await lite.read(f"PRAGMA table_info({table})"):
                required = bool(row["notnull"] or row["pk"])
                sqlite_columns.add((table, row["name"], kinds.get(row["type"], "text"), required))
        sqlite_indexes = {
            row[0]
            for row in await lite.read(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex%'"
            )
        }
    async with pg.opened(tmp_path / "unused") as postgres:
        rows = await postgres.read(
            "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name <> 'schema_version'"
        )
        postgres_columns = {(r[0], r[1], kinds.get(r[2], "text"), r[3] == "NO") for r in rows}
        postgres_indexes = {
            row[0]
            for row in await postgres.read(
                "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
                "AND indexname NOT LIKE '%\\_pkey' AND indexname NOT LIKE '%\\_key'"
            )
        }
    assert postgres_columns == sqlite_columns
    assert postgres_indexes == sqlite_indexes


async def test_processes_starting_together_migrate_an_empty_database_once(postgres_server: PostgresServer) -> None:
    with postgres_server.fresh_database(migrated=False) as name:
        databases = [PostgresDatabase(postgres_server.url(name)) for _ in range(3)]
        try:
            await asyncio.gather(*(database.open() for database in databases))
            versions = [await database.schema_version() for database in databases]
            rows = await databases[0].read("SELECT version, name FROM schema_version ORDER BY version")
        finally:
            for database in databases:
                await database.close()
    migrations = load_migrations("postgres")
    assert versions == [len(migrations)] * 3
    assert [tuple(row) for row in rows] == [(m.version, m.name) for m in migrations]


async def test_refuses_a_database_newer_than_the_code(db: PostgresDatabase, pg: StorageBackend) -> None:
    await db.write("INSERT INTO schema_version (version, name, applied_at) VALUES (999, '0999_future.sql', 0)")
    assert pg.url is not None
    with pytest.raises(StartupError, match="at schema version 999, newer than this Encore"):
        await PostgresDatabase(pg.url).open()


# -- the pool -----------------------------------------------------------------------------------------


async def test_a_pooled_connection_comes_back_clean_without_a_reset_round_trip(pg: StorageBackend) -> None:
    """A statement costs one round trip: the pool sends no reset when a connection comes back (asyncpg's
    default would, doubling the statements a job costs). It comes back clean all the same: a transaction that
    failed midway is rolled back, and its advisory locks end with it."""
    assert pg.url is not None
    db = PostgresDatabase(pg.url, pool_size=1)  # one connection: every use below is the same one
    await db.open()
    watcher = await asyncpg.connect(pg.url)
    try:
        backend = int((await db.read("SELECT pg_backend_pid()"))[0][0])
        await db.read("SELECT 1 AS encore_marker")
        last = await watcher.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", backend)
        assert last == "SELECT 1 AS encore_marker"  # not asyncpg's RESET ALL and the rest

        repo = JobsRepo(db)

        async def fail_midway() -> None:
            async with db.transaction():
                await db.lock(("user", 42))
                await repo.insert_many([new_job("midway0001")])
                raise RuntimeError("midway")

        with pytest.raises(RuntimeError, match="midway"):
            await fail_midway()
        assert await repo.get("midway0001") is None
        assert int((await db.read("SELECT pg_backend_pid()"))[0][0]) == backend
        locks = await watcher.fetchval(
            "SELECT COUNT(*) FROM pg_locks WHERE pid = $1 AND locktype = 'advisory'", backend
        )
        assert locks == 0
        state = await watcher.fetchval("SELECT state FROM pg_stat_activity WHERE pid = $1", backend)
        assert state == "idle"  # not "idle in transaction"
    finally:
        await watcher.close()
        await db.close()


# -- storage trouble, met for real ------------------------------------------------------------------


async def test_a_lock_held_past_the_busy_timeout_is_refused_as_busy_then_works(
    db: PostgresDatabase, pg: StorageBackend
) -> None:
    repo = JobsRepo(db)
    [job] = await repo.insert_many([new_job("job0000001")])
    assert pg.url is not None
    other = await asyncpg.connect(pg.url)  # another program, in a transaction that locks the table
    try:
        async with other.transaction():
            await other.execute("LOCK TABLE jobs IN EXCLUSIVE MODE")  # blocks writes, not reads
            with pytest.raises(StorageBusyError) as refused:
                await repo.transition(job.id, JobStatus.SUBMITTED)
            assert refused.value.user_message == BUSY
            assert isinstance(refused.value.__cause__, asyncpg.LockNotAvailableError)
            assert await status_of(repo, job.id) == JobStatus.QUEUED  # reads go on
            with pytest.raises(StorageBusyError):
                await db.ping()
    finally:
        await other.close()
    assert await repo.transition(job.id, JobStatus.SUBMITTED)
    await db.ping()  # a write worked: healthy again
    assert db.write_problem is None


async def test_a_serialization_failure_is_busy_and_keeps_nothing(postgres_server: PostgresServer) -> None:
    """Two serializable transactions that each count a person's jobs and add one (the quota pattern): one of
    them is refused, as busy, and its job is not stored."""
    with postgres_server.fresh_database() as name:
        postgres_server.execute(name, f'ALTER DATABASE "{name}" SET default_transaction_isolation = serializable')
        db = PostgresDatabase(postgres_server.url(name))
        await db.open()
        try:
            repo = JobsRepo(db)
            counted = asyncio.Barrier(2)

            async def take_a_slot(job_id: str) -> BaseException | None:
                try:
                    async with db.transaction():
                        await db.read("SELECT COUNT(*) FROM jobs WHERE user_id = 1")
                        await counted.wait()  # both have counted before either adds
                        await repo.insert_many([new_job(job_id, user_id=1)])
                except StorageBusyError as exc:
                    return exc
                return None

            async with asyncio.timeout(20):
                results = await asyncio.gather(take_a_slot("slot000001"), take_a_slot("slot000002"))
            [refused] = [result for result in results if result is not None]
            assert isinstance(refused.__cause__, asyncpg.SerializationError)
            assert len(await repo.list_active()) == 1
        finally:
            await db.close()


async def test_too_many_connections_is_busy(postgres_server: PostgresServer, pg: StorageBackend) -> None:
    assert pg.database_name is not None
    role = f"small_{pg.database_name}"
    postgres_server.execute_admin(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 1")
    postgres_server.execute(pg.database_name, f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
    db = PostgresDatabase(postgres_server.url(pg.database_name, user=role), pool_size=2)
    await db.open(migrate=False)
    try:
        holding = asyncio.Event()
        release = asyncio.Event()

        async def hold_the_only_connection() -> None:
            async with db.transaction():
                await db.read("SELECT 1")
                holding.set()
                await release.wait()

        async with asyncio.timeout(20):
            holder = asyncio.create_task(hold_the_only_connection())
            await holding.wait()
            with pytest.raises(StorageBusyError) as refused:
                await JobsRepo(db).insert_many([new_job("job0000001")])  # needs a second connection
            assert isinstance(refused.value.__cause__, asyncpg.TooManyConnectionsError)
            release.set()
            await holder
        await JobsRepo(db).insert_many([new_job("job0000001")])  # the one connection is free again
    finally:
        await db.close()
        postgres_server.execute_admin(f'DROP DATABASE IF EXISTS "{pg.database_name}" WITH (FORCE)')
        postgres_server.execute_admin(f"DROP ROLE {role}")


async def test_a_killed_connection_fails_one_write_and_nothing_else(
    pg: StorageBackend, postgres_server: PostgresServer
) -> None:
    """The server ends Encore's connection (an operator's pg_terminate_backend, a restart, a failover): a read
    is asked again on a new connection, a write is refused once (the job tries again later), and health is good
    again as soon as the server answers."""
    assert pg.url is not None
    assert pg.database_name is not None
    database = pg.database_name
    db = PostgresDatabase(pg.url, pool_size=1)  # one connection: the one that is killed

    def kill_encores_connection() -> None:
        postgres_server.execute(
            database,
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'encore'",
        )

    await db.open()
    try:
        repo = JobsRepo(db)
        [job] = await repo.insert_many([new_job("job0000001")])
        kill_encores_connection()
        assert await status_of(repo, job.id) == JobStatus.QUEUED  # asked again, transparently
        kill_encores_connection()
        with pytest.raises(StorageError) as refused:
            await repo.transition(job.id, JobStatus.SUBMITTED)
        assert type(refused.value) is StorageError
        assert (refused.value.user_message, refused.value.kind) == (FAILING, "failing")
        assert await status_of(repo, job.id) == JobStatus.QUEUED
        await db.ping()  # the server answers: the lost connection is forgiven
        assert await repo.transition(job.id, JobStatus.SUBMITTED)
    finally:
        await db.close()


async def test_a_read_only_server_refuses_writes_as_failing(postgres_server: PostgresServer) -> None:
    """A standby after a failover, or a server set read-only: writes are refused, reads go on."""
    with postgres_server.fresh_database() as name:
        postgres_server.execute(name, f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        db = PostgresDatabase(postgres_server.url(name))
        await db.open(migrate=False)
        try:
            with pytest.raises(StorageError) as refused:
                await JobsRepo(db).insert_many([new_job("job0000001")])
            assert isinstance(refused.value.__cause__, asyncpg.ReadOnlySQLTransactionError)
            assert refused.value.kind == "failing"
            assert await JobsRepo(db).list_active() == []
            with pytest.raises(StorageError):
                await db.ping()
        finally:
            await db.close()


async def test_a_statement_past_the_servers_timeout_is_busy(postgres_server: PostgresServer) -> None:
    with postgres_server.fresh_database() as name:
        postgres_server.execute(name, f"ALTER DATABASE \"{name}\" SET statement_timeout = '200ms'")
        db = PostgresDatabase(postgres_server.url(name))
        await db.open(migrate=False)
        try:
            with pytest.raises(StorageBusyError) as refused:
                await db.read("SELECT pg_sleep(5)")
            assert isinstance(refused.value.__cause__, asyncpg.QueryCanceledError)
        finally:
            await db.close()


async def test_a_full_disk_is_refused_as_full_then_works(postgres_server: PostgresServer, tmp_path: Path) -> None:
    """The database lives on a small disk (a tablespace on a tmpfs) that fills up: writes are refused as full,
    nothing half-written stays, health says so, and writes work again once there is room."""
    # Under the server's own directory, which its user may enter (a test's tmp_path may not be).
    with mount_tmpfs(postgres_server.root / f"disk-{tmp_path.name}", 32 * 1024 * 1024) as disk:
        space = disk.path / "tablespace"
        space.mkdir()
        postgres_server.chown_to_server(disk.path)
        postgres_server.chown_to_server(space)
        tablespace = f"tiny_{tmp_path.name.replace('-', '_')}"[:60]
        postgres_server.execute_admin(f"CREATE TABLESPACE {tablespace} LOCATION '{space}'")
        try:
            with postgres_server.fresh_database(tablespace=tablespace) as name:
                db = PostgresDatabase(postgres_server.url(name))
                await db.open(migrate=False)
                try:
                    repo = JobsRepo(db)
                    await asyncio.to_thread(disk.fill)
                    accepted, refused = 0, None
                    while refused is None and accepted < 2000:
                        try:
                            await repo.insert_many([new_job(f"job{accepted:07d}")])
                            accepted += 1
                        except StorageFullError as exc:
                            refused = exc
                    assert refused is not None, "2,000 jobs fitted on a full disk"
                    assert refused.user_message == FULL
                    assert isinstance(refused.__cause__, asyncpg.DiskFullError)
                    assert len(await repo.list_active()) == accepted  # the refused one left nothing
                    with pytest.raises(StorageFullError):
                        await db.ping()
                    await asyncio.to_thread(disk.free)
                    await repo.insert_many([new_job("afterroom1")])
                    await db.ping()
                finally:
                    await db.close()
        finally:
            postgres_server.execute_admin(f"DROP TABLESPACE IF EXISTS {tablespace}")


async def test_a_bug_is_not_mistaken_for_storage_trouble(db: PostgresDatabase) -> None:
    with pytest.raises(asyncpg.NotNullViolationError):
        await db.write("INSERT INTO webhook_events (webhook_id, received_at) VALUES (NULL, NULL)")
    with pytest.raises(asyncpg.UndefinedTableError):
        await db.write("DELETE FROM nothing_here")
    with pytest.raises(asyncpg.UndefinedTableError):
        await db.read("SELECT * FROM nothing_here")
    assert db.write_problem is None
    await db.ping()


# -- opening: clear, and never with the password ----------------------------------------------------


async def test_a_wrong_password_is_refused_clearly_and_never_shown(
    postgres_server: PostgresServer, pg: StorageBackend, caplog: pytest.LogCaptureFixture
) -> None:
    assert pg.database_name is not None
    right = postgres_server.password_url(pg.database_name)
    wrong = right.replace(postgres_server.password, "not-the-" + postgres_server.password)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StartupError) as refused:
        await PostgresDatabase(wrong).open()
    message = str(refused.value.user_message)
    assert message.startswith(f"PostgreSQL refused the login to postgresql://encore_pw:***@/{pg.database_name}")
    assert "check the user and the password (ENCORE_DATABASE_URL, PGPASSWORD or ~/.pgpass)" in message
    assert postgres_server.password not in message + str(refused.value) + caplog.text
    async with PostgresDatabase(right) as db:  # the right one works
        assert await db.schema_version() == len(load_migrations("postgres"))
    # Every log line goes through the masker (bot/logs.py), which now knows the password.
    line = f"connected to {right}; the password alone: {postgres_server.password}"
    assert postgres_server.password not in MASKER.mask(line)


async def test_a_missing_database_or_server_is_explained(postgres_server: PostgresServer, tmp_path: Path) -> None:
    missing = postgres_server.url("nothing_here")
    with pytest.raises(StartupError) as refused:
        await PostgresDatabase(missing).open()
    assert refused.value.user_message.startswith(f"the database {missing} does not exist")
    nowhere = f"postgresql://encore@/encore?host={tmp_path}"  # no server listens there
    with pytest.raises(StartupError) as refused:
        await PostgresDatabase(nowhere, connect_timeout_s=5).open()
    assert refused.value.user_message.startswith(f"can't reach the database server {nowhere} (")
    assert "check [storage] url or ENCORE_DATABASE_URL, and that PostgreSQL is running" in refused.value.user_message


# -- the mapping, for what a test server can't be made to do ----------------------------------------


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (asyncpg.DataCorruptedError("invalid page in block 7"), "corrupt"),
        (asyncpg.IndexCorruptedError("index is corrupted"), "corrupt"),
        (asyncpg.DiskFullError("could not extend file"), "full"),
        (asyncpg.DeadlockDetectedError("deadlock detected"), "locked"),
        (asyncpg.CannotConnectNowError("the database system is starting up"), "failing"),
        (asyncpg.CrashShutdownError("terminating connection because of crash"), "failing"),
        (asyncpg.PostgresIOError("could not read block"), "failing"),
        (asyncpg.OutOfMemoryError("out of memory"), "failing"),
        (ConnectionRefusedError(111, "Connection refused"), "failing"),
        (asyncpg.InterfaceError("cannot call Connection.fetch(): connection is closed"), "failing"),
        (asyncpg.InterfaceError("another operation is in progress"), None),  # our bug
        (asyncpg.UniqueViolationError("duplicate key"), None),
        (asyncpg.PostgresSyntaxError("syntax error"), None),
    ],
)
def test_the_drivers_errors_map_to_the_storage_errors(exc: BaseException, expected: str | None) -> None:
    problem = storage_error(exc)
    assert (problem.kind if problem else None) == expected
