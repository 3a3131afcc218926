from __future__ import annotations

from pathlib import Path

import aiosqlite
import pytest

from bot.errors import StartupError
from bot.storage.db import Database, load_migrations


async def pragma(db: Database, name: str) -> object:
    rows = list(await db.conn.execute_fetchall(f"PRAGMA {name}"))
    return rows[0][0]


async def test_open_applies_migrations_and_pragmas(tmp_path: Path) -> None:
    async with Database(tmp_path / "nested" / "a.sqlite3", busy_timeout_ms=1234) as db:
        assert await db.user_version() == len(load_migrations())
        assert await pragma(db, "journal_mode") == "wal"
        assert await pragma(db, "foreign_keys") == 1
        assert await pragma(db, "busy_timeout") == 1234
        tables = {row[0] for row in await db.conn.execute_fetchall("SELECT name FROM sqlite_master")}
        assert {"jobs", "webhook_events"} <= tables


async def test_reopening_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"
    async with Database(path) as db:
        await db.conn.execute("INSERT INTO webhook_events (webhook_id, received_at) VALUES ('msg_1', 1.0)")
    async with Database(path) as db:
        assert await db.migrate() == len(load_migrations())
        rows = await db.conn.execute_fetchall("SELECT webhook_id FROM webhook_events")
        assert [row[0] for row in rows] == ["msg_1"]


async def test_refuses_a_database_newer_than_the_code(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"
    async with aiosqlite.connect(path) as conn:
        await conn.execute("PRAGMA user_version = 999")
    with pytest.raises(StartupError, match="newer than this Encore"):
        await Database(path).open()


def test_migrations_are_numbered_without_gaps() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
