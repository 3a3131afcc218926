"""Storage faults from real conditions: another program holding SQLite's write lock, and disks with no room.

* :class:`WriteLock`: a second, real SQLite connection to the bot's database inside ``BEGIN IMMEDIATE`` or
  ``BEGIN EXCLUSIVE`` (in WAL mode both take the one write lock), as an operator's ``sqlite3`` shell in a
  transaction or a ``VACUUM`` does. It makes a change of its own, committed when it lets go.
* :class:`Tmpfs`: a small tmpfs mounted as the data directory, filled with a file until the kernel says
  ENOSPC and freed by deleting it. Mounting needs root (CAP_SYS_ADMIN): elsewhere :func:`mount_tmpfs` skips.
* :func:`file_size_limit`: ``RLIMIT_FSIZE`` for this process, so every write past the limit fails with the
  kernel's EFBIG (CPython ignores SIGXFSZ). Needs no privileges.
* :func:`limit_database_pages`: SQLite's ``PRAGMA max_page_count`` on the bot's connection, so a write that
  needs a new page fails with SQLITE_FULL, "database or disk is full", the error a full disk gives.
* :func:`damage_page`: garbage over the pages of one table or index of a database file no one has open, as a
  failing disk or a stray write leaves it: ``SELECT 1`` still works, statements that need those pages fail
  with SQLITE_CORRUPT, "database disk image is malformed".

The watchers let a test wait for what the bot does without sleeping: :class:`StatementWatch` hears the
statements the bot's connection starts (SQLite's own trace hook), :class:`LogWatch` the bot's log records.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app import Core
from bot.logs import JobFilter
from bot.records import Job
from bot.storage.db import Database
from tests.fakes.listener import RecordingListener
from tests.integration.conftest import Harness


class WriteLock:
    """Another program holding the write lock of the database at ``path`` until :meth:`release`."""

    def __init__(self, path: Path, *, mode: str = "IMMEDIATE") -> None:
        self.path = path
        self.mode = mode
        self.changes: list[str] = []  # the other program's own rows (in webhook_events), committed at release
        self._conn: sqlite3.Connection | None = None
        self.held_s = 0.0
        self._since = 0.0

    def hold_now(self) -> None:
        """Take the lock at once, blocking the caller while the bot finishes a write (milliseconds).

        For hooks that can't await (a fake's request hook); otherwise use :meth:`acquire`.
        """
        assert self._conn is None, "already held"
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
        conn.execute(f"BEGIN {self.mode}")
        change = f"operator-{len(self.changes) + 1}"
        conn.execute("INSERT INTO webhook_events (webhook_id, received_at) VALUES (?, ?)", (change, time.time()))
        self.changes.append(change)
        self._conn = conn
        self._since = time.monotonic()

    async def acquire(self) -> None:
        await asyncio.to_thread(self.hold_now)

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        assert conn is not None, "not held"
        self.held_s += time.monotonic() - self._since

        def commit() -> None:
            conn.execute("COMMIT")
            conn.close()

        await asyncio.to_thread(commit)


class StatementWatch:
    """The statements the bot's SQLite connection starts, with their values (``sqlite3_trace_v2``).

    The callback runs on aiosqlite's thread as a statement begins, before it waits for any lock.
    """

    def __init__(self) -> None:
        self.statements: list[str] = []
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()

    async def attach(self, db: Database) -> None:
        await db.conn.set_trace_callback(self._traced)

    def _traced(self, sql: str) -> None:
        self._loop.call_soon_threadsafe(self._add, sql)

    def _add(self, sql: str) -> None:
        self.statements.append(sql)
        self._changed.set()

    def mark(self) -> int:
        return len(self.statements)

    async def wait_for(self, pattern: str, *, since: int, timeout: float = 10.0) -> str:
        """The first statement from index ``since`` on that matches ``pattern`` (a regex)."""
        async with asyncio.timeout(timeout):
            while True:
                self._changed.clear()
                for sql in self.statements[since:]:
                    if re.search(pattern, sql):
                        return sql
                await self._changed.wait()


class LogWatch(logging.Handler):
    """Every record of the ``bot`` loggers at WARNING or above, each with the job it was about (``job``)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.addFilter(JobFilter())
        self.records: list[logging.LogRecord] = []
        self._lock = threading.Lock()
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:  # any thread
        record.getMessage()
        with self._lock:
            self.records.append(record)
        self._loop.call_soon_threadsafe(self._changed.set)

    def snapshot(self) -> list[logging.LogRecord]:
        with self._lock:
            return list(self.records)

    def about(self, job_id: str, text: str) -> list[logging.LogRecord]:
        """Records bound to ``job_id`` whose message contains ``text``."""
        return [r for r in self.snapshot() if getattr(r, "job", None) == job_id and text in r.getMessage()]

    def containing(self, text: str) -> list[logging.LogRecord]:
        return [r for r in self.snapshot() if text in r.getMessage()]

    async def wait_for(self, check: Callable[[], bool], *, timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout):
            while True:
                self._changed.clear()
                if check():
                    return
                await self._changed.wait()


@contextlib.asynccontextmanager
async def watching_logs() -> AsyncIterator[LogWatch]:
    watch = LogWatch()
    logger = logging.getLogger("bot")
    level = logger.level
    logger.addHandler(watch)
    if logger.getEffectiveLevel() > logging.WARNING:
        logger.setLevel(logging.WARNING)
    try:
        yield watch
    finally:
        logger.removeHandler(watch)
        logger.setLevel(level)


@dataclass
class GatedListener(RecordingListener):
    """Discord delivery where the posts of jobs in ``hold`` wait at a gate (a slow upload) until opened."""

    hold: set[str] = field(default_factory=set)
    at_gate: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)

    async def deliver(self, jobs: Sequence[Job]) -> int | None:
        lead = jobs[0].id
        if lead in self.hold:
            self.hold.discard(lead)
            gate = self.gates.setdefault(lead, asyncio.Event())
            self.at_gate.put_nowait(lead)
            await gate.wait()
        return await super().deliver(jobs)

    def open(self, job_id: str) -> None:
        self.gates.setdefault(job_id, asyncio.Event()).set()


async def start_core(
    harness: Harness, *, storage: dict[str, Any] | None = None, limits: dict[str, Any] | None = None
) -> str:
    """The core as ``python -m bot run`` starts it (web server on, for /healthz); returns its base URL."""
    settings = harness.configure(storage=storage or {}, limits=limits or {})
    core = Core(settings, harness.secrets)
    harness.core = core
    await core.open()
    await core.start_service(harness.listener, serve_web=True)
    assert core.web is not None
    return f"http://127.0.0.1:{core.web.port}"


async def health(base: str) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
        http.get(f"{base}/healthz") as response,
    ):
        return response.status, await response.json()


def check_database(path: Path) -> tuple[str, list[str], dict[str, int]]:
    """After the bot stopped: SQLite's integrity check, the operator's rows, and jobs by status."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        verdict = conn.execute("PRAGMA integrity_check").fetchone()[0]
        changes = [r[0] for r in conn.execute("SELECT webhook_id FROM webhook_events WHERE webhook_id LIKE 'op%'")]
        statuses = dict(conn.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())
    return str(verdict), changes, statuses


def damage_page(path: Path, name: str) -> None:
    """Overwrite the root page of the table or index ``name`` in the (closed) database at ``path`` with garbage."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        row = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (name,)).fetchone()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert row is not None, f"no table or index {name}"
    assert not path.with_name(path.name + "-wal").exists() or not path.with_name(path.name + "-wal").stat().st_size
    with path.open("r+b") as handle:
        handle.seek((int(row[0]) - 1) * page_size)
        handle.write(bytes([0xEE]) * page_size)


def leftovers(data_dir: Path) -> list[Path]:
    """Partial files a failed write left behind."""
    return sorted(data_dir.rglob("*.part"))


# -- disks with no room ---------------------------------------------------------------------------------


class Tmpfs:
    """A mounted tmpfs of ``size_bytes`` at ``path``; :meth:`fill` takes every free block, :meth:`free` gives
    them back."""

    def __init__(self, path: Path, size_bytes: int) -> None:
        self.path = path
        self.size_bytes = size_bytes
        self.filler = path / "filler.bin"

    def fill(self) -> int:
        """Write a file until the kernel answers ENOSPC; returns its size. Blocking: run it in a thread."""
        written = 0
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (b"\0" * (1 << 20), b"\0" * 4096, b"\0"):
                while True:
                    try:
                        written += os.write(fd, chunk)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        self.filler.unlink()

    def free_bytes(self) -> int:
        stat = os.statvfs(self.path)
        return stat.f_bavail * stat.f_frsize


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False)  # noqa: S603 - fixed commands


@contextlib.contextmanager
def mount_tmpfs(path: Path, size_bytes: int) -> Iterator[Tmpfs]:
    """Mount a tmpfs at ``path`` for the block; skips the test where this machine won't let us mount."""
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if not sys.platform.startswith("linux") or mount is None or umount is None:
        pytest.skip("mounting a tmpfs needs Linux with mount(8)")
    path.mkdir(parents=True, exist_ok=True)
    result = _run(mount, "-t", "tmpfs", "-o", f"size={size_bytes},mode=0700", "encore-faults", str(path))
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["mount failed"])[0]
        pytest.skip(f"can't mount a tmpfs here (needs root or CAP_SYS_ADMIN): {reason}")
    try:
        yield Tmpfs(path, size_bytes)
    finally:
        _run(umount, "--lazy", str(path))


@contextlib.contextmanager
def file_size_limit(limit_bytes: int) -> Iterator[None]:
    """Lower this process's ``RLIMIT_FSIZE`` (the soft limit only, so it can be raised back) for the block."""
    if signal.getsignal(signal.SIGXFSZ) != signal.SIG_IGN:
        pytest.skip("SIGXFSZ is not ignored in this process: a write past the limit would kill it")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def sqlite_db(harness: Harness) -> Database:
    """The bot's database, which these faults (SQLite's locks, pages and files) are about."""
    assert harness.core is not None
    db = harness.core.db
    assert isinstance(db, Database), "the storage faults are SQLite's"
    return db


async def limit_database_pages(db: Database, pages: int | None) -> int:
    """SQLite's ``max_page_count`` on the bot's connection (None: SQLite's largest); returns the new limit.

    A write that needs more pages fails with SQLITE_FULL. The limit can't go below the pages in use.
    """
    value = 0xFFFFFFFE if pages is None else pages
    async with db.conn.execute(f"PRAGMA max_page_count = {int(value)}") as cursor:
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def page_count(db: Database) -> int:
    async with db.conn.execute("PRAGMA page_count") as cursor:
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])
