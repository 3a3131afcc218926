"""``python -m bot db backup`` and ``db stats`` as real subprocesses, next to an open database (a running bot)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from bot.records import JobOrigin, JobStatus
from bot.storage.db import Database, load_migrations
from bot.storage.jobs_repo import JobsRepo
from bot.storage.postgres import PostgresDatabase
from tests.integration.test_cli import finish, run_cli
from tests.postgres import PostgresServer


@pytest.fixture
async def running_db(tmp_path: Path) -> AsyncIterator[Database]:
    """The bot's database, open (WAL mode, rows not yet checkpointed) while the CLI runs."""
    db = Database(tmp_path / "data" / "encore.sqlite3")
    await db.open()
    yield db
    await db.close()


def data_env(tmp_path: Path) -> dict[str, str]:
    return {"ENCORE_STORAGE__DIR": str(tmp_path / "data")}


async def add_job(repo: JobsRepo, job_id: str, model: str, *to: JobStatus, created_at: float | None = None) -> None:
    await repo.insert(
        job_id=job_id,
        origin=JobOrigin(user_id=1),
        provider="replicate",
        model=model,
        model_ref="owner/name",
        request={"prompt": "x"},
        input={},
        now=created_at,
    )
    for status in to:
        assert await repo.transition(job_id, status)


async def read(path: Path, sql: str) -> list[tuple[object, ...]]:
    async with aiosqlite.connect(path) as conn:
        return [tuple(row) for row in await conn.execute_fetchall(sql)]


async def test_backup_copies_a_live_database_and_verifies_it(tmp_path: Path, running_db: Database) -> None:
    repo = JobsRepo(running_db)
    await add_job(repo, "job0000001", "musicgen", JobStatus.SUBMITTED)
    await add_job(repo, "job0000002", "song")
    target = tmp_path / "backups" / "encore-1.sqlite3"
    target.parent.mkdir()

    result = await finish(await run_cli(tmp_path, "db", "backup", str(target), env=data_env(tmp_path)))
    assert result.code == 0, result.stderr
    assert f"backed up {running_db.path} to {target}" in result.stdout
    assert f"schema version {len(load_migrations())}" in result.stdout
    assert await read(target, "PRAGMA user_version") == [(await running_db.user_version(),)]
    assert await read(target, "SELECT id, status FROM jobs ORDER BY id") == [
        ("job0000001", "submitted"),
        ("job0000002", "queued"),
    ]
    assert await read(target, "PRAGMA journal_mode") == [("delete",)]  # one self-contained file
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


async def test_backup_never_overwrites_without_force(tmp_path: Path, running_db: Database) -> None:
    target = tmp_path / "backup.sqlite3"
    target.write_bytes(b"an older backup")

    result = await finish(await run_cli(tmp_path, "db", "backup", str(target), env=data_env(tmp_path)))
    assert (result.code, result.stderr.strip()) == (2, f"error: {target} exists; pass --force to replace it")
    assert target.read_bytes() == b"an older backup"

    await add_job(JobsRepo(running_db), "job0000003", "musicgen")
    result = await finish(await run_cli(tmp_path, "db", "backup", str(target), "--force", env=data_env(tmp_path)))
    assert result.code == 0, result.stderr
    assert await read(target, "SELECT id FROM jobs") == [("job0000003",)]


async def test_backup_and_stats_without_a_database_say_so(tmp_path: Path) -> None:
    for args in (["db", "backup", str(tmp_path / "b.sqlite3")], ["db", "stats"]):
        result = await finish(await run_cli(tmp_path, *args, env=data_env(tmp_path)))
        assert result.code == 1
        assert f"there is no database at {tmp_path / 'data' / 'encore.sqlite3'}" in result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "encore.sqlite3").exists()  # nothing was created
    assert not (tmp_path / "b.sqlite3").exists()


async def test_stats_counts_jobs_and_disk_use(tmp_path: Path, running_db: Database) -> None:
    repo = JobsRepo(running_db)
    now = time.time()
    await add_job(repo, "oldestjob1", "stable-audio", JobStatus.SUBMITTED, JobStatus.RUNNING, created_at=now - 7200)
    await add_job(repo, "newerjob01", "musicgen", created_at=now - 60)
    await add_job(repo, "donejob001", "musicgen", JobStatus.SUBMITTED, JobStatus.SUCCEEDED, JobStatus.DELIVERED)
    await add_job(repo, "failjob001", "musicgen", JobStatus.FAILED, created_at=now - 9999)
    outputs = tmp_path / "data" / "outputs"
    outputs.mkdir()
    (outputs / "a.wav").write_bytes(b"x" * 1000)
    (outputs / "b.wav").write_bytes(b"x" * 2048)

    result = await finish(await run_cli(tmp_path, "db", "stats", env=data_env(tmp_path)))
    assert result.code == 0, result.stderr
    text = result.stdout
    assert "jobs       4" in text
    assert "by status: delivered 1, failed 1, queued 1, running 1" in text
    assert "by model:  musicgen 3, stable-audio 1" in text
    assert "oldest unfinished job: oldestjob1 (stable-audio, running), queued 2h 0m ago" in text
    assert f"outputs    {outputs}: 2 file(s), 3.0 KiB" in text

    result = await finish(await run_cli(tmp_path, "db", "stats", "--json", env=data_env(tmp_path)))
    assert result.code == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["jobs"] == {
        "total": 4,
        "by_status": {"delivered": 1, "failed": 1, "queued": 1, "running": 1},
        "by_model": {"musicgen": 3, "stable-audio": 1},
    }
    assert stats["oldest_active_job"]["id"] == "oldestjob1"
    assert stats["oldest_active_job"]["age_s"] >= 7200
    assert stats["directories"]["outputs"] == {"path": str(outputs), "files": 2, "bytes": 3048}
    assert stats["directories"]["uploads"]["files"] == 0
    assert stats["database"]["schema_version"] == len(load_migrations())
    assert stats["database"]["bytes"] > 0


async def test_stats_leaves_an_older_schema_alone(tmp_path: Path) -> None:
    """The bot (an older version, say) owns the schema: stats reads it and migrates nothing."""
    path = tmp_path / "data" / "encore.sqlite3"
    path.parent.mkdir()
    first = load_migrations()[0]
    async with aiosqlite.connect(path) as conn:
        await conn.executescript(f"{first.sql}\nPRAGMA user_version = 1;")
        await conn.execute(
            "INSERT INTO jobs (id, user_id, provider, model, model_ref, request_json, input_json, status, "
            "created_at, updated_at) VALUES ('old0000001', 1, 'replicate', 'musicgen', 'x/y', '{}', '{}', "
            "'queued', 1.0, 1.0)"
        )
        await conn.commit()
    result = await finish(await run_cli(tmp_path, "db", "stats", "--json", env=data_env(tmp_path)))
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["jobs"]["by_status"] == {"queued": 1}
    assert await read(path, "PRAGMA user_version") == [(1,)]


# -- PostgreSQL ---------------------------------------------------------------------------------------


async def test_migrate_stats_and_backup_advice_on_postgresql(postgres_server: PostgresServer, tmp_path: Path) -> None:
    """On PostgreSQL (the password-protected login, its URL in ENCORE_DATABASE_URL): `db migrate` brings an
    empty database up to date, `db stats` reads it, `db backup` says to use pg_dump and how; the password never
    shows."""
    migrations = load_migrations("postgres")
    with postgres_server.fresh_database(migrated=False) as name:
        url = postgres_server.password_url(name)
        env = {**data_env(tmp_path), "ENCORE_DATABASE_URL": url}
        masked = url.replace(postgres_server.password, "***")

        result = await finish(await run_cli(tmp_path, "db", "stats", env=env))
        assert (result.code, result.stderr.strip()) == (
            1,
            f"error: the database {masked} has no Encore tables yet: run `python -m bot db migrate` "
            "(or start Encore, which migrates it)",
        )

        result = await finish(await run_cli(tmp_path, "db", "migrate", env=env))
        assert result.code == 0, result.stderr
        assert result.stdout.strip() == (
            f"database {masked}: schema version {len(migrations)} (applied {len(migrations)} migration(s))"
        )
        result = await finish(await run_cli(tmp_path, "db", "migrate", env=env))
        assert result.stdout.strip() == f"database {masked}: schema version {len(migrations)} (already up to date)"

        async with PostgresDatabase(url) as db:
            repo = JobsRepo(db)
            await add_job(repo, "pgjob00001", "musicgen", JobStatus.SUBMITTED, created_at=time.time() - 3600)
            await add_job(repo, "pgjob00002", "song", JobStatus.FAILED)
        result = await finish(await run_cli(tmp_path, "db", "stats", "--json", env=env))
        assert result.code == 0, result.stderr
        stats = json.loads(result.stdout)
        assert stats["jobs"] == {
            "total": 2,
            "by_status": {"failed": 1, "submitted": 1},
            "by_model": {"musicgen": 1, "song": 1},
        }
        assert stats["oldest_active_job"]["id"] == "pgjob00001"
        database = stats["database"]
        assert (database["backend"], database["url"], database["schema_version"]) == (
            "postgres",
            masked,
            len(migrations),
        )
        assert database["bytes"] > 1_000_000  # pg_database_size: a PostgreSQL database is a few MB at least
        result = await finish(await run_cli(tmp_path, "db", "stats", env=env))
        assert f"database   {masked} (postgres, " in result.stdout

        target = tmp_path / "encore backup.dump"
        result = await finish(await run_cli(tmp_path, "db", "backup", str(target), env=env))
        assert result.code == 2
        plain = url.replace(f":{postgres_server.password}@", "@")
        assert result.stderr.splitlines() == [
            "error: the database is PostgreSQL: back it up with pg_dump (safe while Encore runs; one consistent "
            "snapshot):",
            f"  pg_dump --format=custom --file='{target}' --dbname='{plain}'",
            "with the password in PGPASSWORD or ~/.pgpass (as in ENCORE_DATABASE_URL). To restore it, stop Encore, "
            "then:",
            f"  pg_restore --clean --if-exists --no-owner --dbname='{plain}' '{target}'",
        ]
        assert not target.exists()
        assert postgres_server.password not in result.stdout + result.stderr


async def test_a_wrong_password_is_a_clear_error_that_never_shows_it(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    with postgres_server.fresh_database() as name:
        wrong = postgres_server.password_url(name).replace(postgres_server.password, "wrong-password-1234")
        for args in (["db", "stats"], ["db", "migrate"]):
            result = await finish(
                await run_cli(tmp_path, *args, env={**data_env(tmp_path), "ENCORE_DATABASE_URL": wrong})
            )
            assert result.code == 1
            assert result.stderr.startswith(
                f"error: PostgreSQL refused the login to {wrong.replace('wrong-password-1234', '***')} ("
            )
            assert "wrong-password-1234" not in result.stdout + result.stderr
            assert "Traceback" not in result.stderr


async def test_a_password_in_the_config_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[storage]\nurl = "postgresql://encore:hunter2-secret@db/encore"\n')
    result = await finish(await run_cli(tmp_path, "db", "stats", env=data_env(tmp_path)))
    assert result.code == 2
    assert "[storage] url: Value error, holds a password: put the whole URL in ENCORE_DATABASE_URL" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


async def test_migrate_on_sqlite_makes_the_database(tmp_path: Path) -> None:
    result = await finish(await run_cli(tmp_path, "db", "migrate", env=data_env(tmp_path)))
    assert result.code == 0, result.stderr
    path = tmp_path / "data" / "encore.sqlite3"
    count = len(load_migrations())
    assert result.stdout.strip() == f"database {path}: schema version {count} (applied {count} migration(s))"
    assert await read(path, "PRAGMA user_version") == [(count,)]
