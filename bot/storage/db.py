"""The SQLite backend: open with the right pragmas, migrate, close (the default; see ``backend`` for the interface
it shares with PostgreSQL).

One ``aiosqlite`` connection serves the whole process (aiosqlite runs every statement on its own
thread, so the event loop never blocks on disk). Migrations are numbered SQL files in
``migrations/``; the applied version is SQLite's ``PRAGMA user_version``.

Every statement runs whole in one call to aiosqlite's thread (:meth:`Database.read`, :meth:`Database.write`):
a query left open across an ``await`` would hold a read snapshot while other coroutines write on the same
connection, and SQLite refuses such a write at once (SQLITE_BUSY, no busy wait) when another program has
committed meanwhile. :meth:`Database.write` turns storage trouble into a :class:`~bot.errors.StorageError`:
the database locked by another program (a ``sqlite3`` shell in a transaction, a ``VACUUM``) for longer than
the busy timeout, a full disk, a failing one. Reads don't wait for writers (WAL).

:meth:`Database.transaction` holds the one connection for the task that opened it (``BEGIN IMMEDIATE``: the
write lock is taken at once, waiting up to the busy timeout); other tasks' statements wait until it ends.

A damaged file ("database disk image is malformed") can answer ``SELECT 1`` while the pages a write needs are
broken. Any statement that meets the damage, and SQLite's ``PRAGMA quick_check`` (at open, then every
``integrity_check_s`` when :meth:`Database.ping` runs), mark the database corrupt; ``ping`` (so ``/healthz``)
reports it until a later check passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from bot.errors import (
    BotError,
    StartupError,
    StorageBusyError,
    StorageCorruptError,
    StorageError,
    StorageFullError,
)
from bot.storage.backend import BackendBase, LockName, Migration, load_migrations
from bot.storage.sql import SQLITE, Params

log = logging.getLogger(__name__)


def storage_error(exc: sqlite3.Error) -> StorageError | None:
    """The storage trouble behind a failed statement (None: a bug, such as bad SQL or a broken constraint)."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StorageBusyError(detail=str(exc))
    if primary == sqlite3.SQLITE_FULL:
        return StorageFullError(detail=str(exc))
    if primary in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB) or "disk image is malformed" in str(exc):
        return StorageCorruptError(detail=str(exc))
    if primary in (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY):
        return StorageError(detail=str(exc))
    return None


def unusable(path: Path, exc: OSError | sqlite3.Error | StorageError) -> StartupError:
    """Why the database at ``path`` can't be opened, and what to do about it, in one line."""
    problem = storage_error(exc) if isinstance(exc, sqlite3.Error) else exc
    if isinstance(problem, StorageCorruptError):
        return StartupError(
            f"the database {path} is damaged or not a database ({problem}): restore a backup there (README: "
            "Operations, Backups) or move the file away to start with an empty one",
            detail=str(exc),
        )
    if isinstance(problem, StorageBusyError):
        return StartupError(
            f"the database {path} is locked by another program (another Encore, a sqlite3 shell?): stop it, "
            "or raise [storage] busy_timeout_ms, and start again",
            detail=str(exc),
        )
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return StartupError(
        f"can't open the database {path} ({reason}): check [storage] dir (ENCORE_STORAGE__DIR), its free "
        "space and permissions",
        detail=str(exc),
    )


class Database(BackendBase):
    """The SQLite backend. Owns the connection. Use :meth:`open` and :meth:`close` (or ``async with``)."""

    dialect = SQLITE
    shared = False  # one process (the bot; a terminal run may share it a while)
    _repair_advice = "restore it from a backup (python -m bot db backup) or recover it with sqlite3's .recover"

    def __init__(self, path: Path, *, busy_timeout_ms: int = 5000, integrity_check_s: float = 0.0) -> None:
        """``integrity_check_s``: run ``PRAGMA quick_check`` at open and, from :meth:`ping`, again once this
        long has passed (0: never)."""
        super().__init__()
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.integrity_check_s = integrity_check_s
        self._conn: aiosqlite.Connection | None = None
        self._checked_at: float | None = None  # event-loop time of the last integrity check
        # One transaction at a time holds the connection; while one does, other tasks' statements wait.
        self._transaction_lock = asyncio.Lock()
        self._no_transaction = asyncio.Event()
        self._no_transaction.set()
        self._in_transaction = contextvars.ContextVar(f"encore_sqlite_tx_{id(self)}", default=False)

    @property
    def where(self) -> str:
        return str(self.path)

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("database is not open")
        return self._conn

    async def open(self, *, migrate: bool = True) -> None:
        """Connect and apply pending migrations (``migrate=False``: leave the schema alone, e.g. to read
        stats from a database a running bot owns)."""
        try:
            if self.path.parent != Path():
                await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)
            # isolation_level=None: autocommit; transactions are explicit (BEGIN ... COMMIT).
            conn = await aiosqlite.connect(self.path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise unusable(self.path, exc) from None
        try:
            conn.row_factory = aiosqlite.Row
            await conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA foreign_keys = ON")
            await conn.execute("PRAGMA synchronous = NORMAL")
            self._conn = conn
            if self.integrity_check_s > 0:
                await self.check_integrity()
            if migrate:
                await self.migrate()
        except BaseException as exc:
            await conn.close()
            self._conn = None
            if isinstance(exc, sqlite3.Error | StorageError):
                raise unusable(self.path, exc) from None
            raise

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    async def ping(self, *, timeout_s: float = 2.0) -> None:
        """Raise unless the database answers ``SELECT 1`` within ``timeout_s``, is not damaged and takes writes
        (for health checks): a damaged file raises :class:`StorageCorruptError` until an integrity check
        passes; after a refused write it raises that :class:`StorageError` until a write works again."""
        async with asyncio.timeout(timeout_s):
            await self.read("SELECT 1")
        loop = asyncio.get_running_loop()
        if self.integrity_check_s > 0 and (
            self._checked_at is None or loop.time() - self._checked_at >= self.integrity_check_s
        ):
            await self.check_integrity()
        self._raise_problem()

    async def check_integrity(self) -> bool:
        """SQLite's ``PRAGMA quick_check`` (every page, no index contents: milliseconds for a few MB): False
        and :attr:`corruption` set if the file is damaged; a pass clears an earlier finding."""
        self._checked_at = asyncio.get_running_loop().time()
        try:
            rows = await self.read("PRAGMA quick_check(1)")
        except StorageCorruptError:
            return False
        verdict = str(rows[0][0]) if rows else "no answer"
        if verdict != "ok":
            self._found_corruption(StorageCorruptError(detail=f"quick_check: {verdict}"))
            return False
        if self.corruption is not None:
            log.warning("the database passes its integrity check again (after: %s)", self.corruption)
            self.corruption = None
        return True

    async def _turn(self) -> None:
        """Wait while another task's transaction holds the connection (no wait at all when none does)."""
        while not self._no_transaction.is_set() and not self._in_transaction.get():
            await self._no_transaction.wait()

    async def read(self, sql: str, parameters: Params = ()) -> list[aiosqlite.Row]:
        """Every row of a query, read in one go (so no statement stays open). A damaged file raises
        :class:`StorageCorruptError`."""
        await self._turn()
        try:
            return list(await self.conn.execute_fetchall(sql, parameters))
        except sqlite3.DatabaseError as exc:
            problem = storage_error(exc)
            if not isinstance(problem, StorageCorruptError):
                raise
            self._found_corruption(problem)
            raise problem from exc

    async def read_one(self, sql: str, parameters: Params = ()) -> aiosqlite.Row | None:
        rows = await self.read(sql, parameters)
        return rows[0] if rows else None

    async def write(self, sql: str, parameters: Params = (), *, quiet: bool = False) -> int:
        """Run one statement that changes data (no ``RETURNING``); it is stored whole or not at all
        (autocommit). Returns how many rows it changed.

        SQLite waits up to the busy timeout for another program's write lock. Storage trouble raises a
        :class:`StorageError` (locked past the timeout, disk or database full, I/O failing) with a message
        fit for users; the first one is logged as an error for the operator, and a later write that changes
        rows says so. A ``quiet`` write (bookkeeping: a heartbeat, a rate limit) tells health nothing.
        """
        await self._turn()
        try:
            async with self.conn.execute(sql, parameters) as cursor:  # runs to the end: one step
                changed = cursor.rowcount
        except sqlite3.DatabaseError as exc:  # OperationalError, and DatabaseError for a damaged file
            problem = storage_error(exc)
            if problem is None:
                raise
            if not quiet:
                self._write_refused(problem, exc)
            raise problem from exc
        if changed > 0 and not quiet:
            self._write_worked()
        return changed

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """One transaction for every statement this task runs inside the block (see ``backend``); a nested
        block joins the outer one. ``BEGIN IMMEDIATE`` takes SQLite's write lock at once, so the transaction
        never fails halfway for want of it; storage trouble raises a :class:`StorageError` as :meth:`write`
        does, and nothing of the transaction is kept."""
        if self._in_transaction.get():
            yield
            return
        async with self._transaction_lock:
            token = self._in_transaction.set(True)
            self._no_transaction.clear()
            try:
                await self.write("BEGIN IMMEDIATE")
                try:
                    yield
                except BaseException:
                    await asyncio.shield(self._rollback())
                    raise
                try:
                    await self.write("COMMIT")
                except BaseException:
                    await asyncio.shield(self._rollback())
                    raise
            finally:
                self._in_transaction.reset(token)
                self._no_transaction.set()

    async def lock(self, *names: LockName) -> None:
        """Nothing to take: the transaction holds SQLite's write lock (``BEGIN IMMEDIATE``), so transactions
        already run one at a time, in every process using the file. Only inside :meth:`transaction`."""
        if not self._in_transaction.get():
            raise RuntimeError("lock() holds its names until the transaction ends: call it inside transaction()")

    async def _rollback(self) -> None:
        if self._conn is not None and self._conn.in_transaction:
            await self._conn.rollback()

    async def user_version(self) -> int:
        row = await self.read_one("PRAGMA user_version")
        return int(row[0]) if row else 0

    async def schema_version(self) -> int:
        return await self.user_version()

    async def size_bytes(self) -> int:
        return await asyncio.to_thread(files_size, self.path)

    async def migrate(self) -> int:
        """Apply pending migrations, each in its own transaction. Returns the new version."""
        current = await self.user_version()
        migrations = load_migrations()
        if current > len(migrations):
            raise StartupError(
                f"the database {self.path} is at schema version {current}, newer than this Encore "
                f"({len(migrations)}): run the newer Encore, or restore a backup made by this version"
            )
        for migration in migrations[current:]:
            log.info("applying migration %s", migration.name)
            # executescript runs the whole file; a failure leaves the transaction open, so roll back.
            script = f"BEGIN;\n{migration.sql}\nPRAGMA user_version = {migration.version};\nCOMMIT;"
            try:
                await self.conn.executescript(script)
            except BaseException:
                if self.conn.in_transaction:
                    await self.conn.rollback()
                raise
        return await self.user_version()


def files_size(path: Path) -> int:
    """Bytes on disk of a database with its WAL and shared-memory files (blocking: run in a thread)."""
    total = 0
    for candidate in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            total += candidate.stat().st_size
    return total


class BackupError(BotError):
    default_message = "The backup failed."


@dataclass(frozen=True)
class Backup:
    path: Path
    size: int
    user_version: int


async def _pragma(conn: aiosqlite.Connection, name: str) -> Any:
    async with conn.execute(f"PRAGMA {name}") as cursor:
        row = await cursor.fetchone()
    return row[0] if row else None


async def backup(source: Path, target: Path, *, force: bool = False, busy_timeout_ms: int = 5000) -> Backup:
    """Copy the database at ``source`` into ``target`` with SQLite's online backup API.

    Safe while the bot is running: the copy is one consistent snapshot. It is written next to ``target``
    first, switched to a single self-contained file (no WAL), checked (it opens, passes ``quick_check``
    and has the source's ``user_version``), and only then moved into place; an existing ``target`` is
    replaced only with ``force``.
    """
    partial = await asyncio.to_thread(_check_paths, source, target, force)
    try:
        async with aiosqlite.connect(source) as src:
            await src.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            async with aiosqlite.connect(partial) as dest:
                await src.backup(dest)
                await dest.execute("PRAGMA journal_mode = DELETE")
            version = int(await _pragma(src, "user_version") or 0)
        async with aiosqlite.connect(partial.resolve().as_uri() + "?mode=ro", uri=True) as check:
            verdict = await _pragma(check, "quick_check")
            copied_version = int(await _pragma(check, "user_version") or 0)
        if verdict != "ok":
            raise BackupError(f"the copy failed its integrity check: {verdict}")
        if copied_version != version:
            raise BackupError(f"the copy is at schema version {copied_version}, the database at {version}")
        await asyncio.to_thread(os.replace, partial, target)
    except BaseException:
        await asyncio.to_thread(_remove, partial)
        raise
    size = (await asyncio.to_thread(target.stat)).st_size
    log.info("backed up %s to %s (%d bytes, schema %d)", source, target, size, version)
    return Backup(path=target, size=size, user_version=version)


def _check_paths(source: Path, target: Path, force: bool) -> Path:
    """Refuse a backup that can't or mustn't be made; returns where to write the copy first."""
    if not source.is_file():
        raise BackupError(f"there is no database at {source}")
    if target.exists() and not force:
        raise FileExistsError(target)
    if target.resolve() == source.resolve():
        raise BackupError("the backup can't replace the database itself")
    if not target.parent.is_dir():
        raise BackupError(f"the directory {target.parent} does not exist")
    return target.with_name(f".{target.name}.partial")


def _remove(path: Path) -> None:
    for candidate in (path, path.with_name(path.name + "-journal")):
        candidate.unlink(missing_ok=True)


__all__ = [
    "Backup",
    "BackupError",
    "Database",
    "Migration",
    "backup",
    "files_size",
    "load_migrations",
    "storage_error",
    "unusable",
]
