"""The storage backends' one interface, what they share, and the choice between them.

Two backends keep Encore's tables: SQLite (:class:`bot.storage.db.Database`, the default: one process, one
file, nothing to install) and PostgreSQL (:class:`bot.storage.postgres.PostgresDatabase`, for several processes
sharing one database). The repositories (``*_repo.py``) talk to either through :class:`Backend`:

- ``read(sql, params)`` / ``read_one``: every row of a query, read whole (no statement stays open);
- ``write(sql, params)``: one statement that changes data, applied whole or not at all; returns how many rows it
  changed, so a conditional ``UPDATE ... WHERE status IN (...)`` tells its caller whether it won. A refused write
  makes the database unhealthy (``write_problem``) until a write changes rows again; ``quiet=True`` (bookkeeping
  that runs whatever the jobs do: a heartbeat, a rate limit) tells health nothing either way;
- ``transaction()``: ``async with db.transaction():`` runs every read and write the *current task* makes
  through this backend (repositories included) in one transaction, committed at the end or rolled back on an
  exception. Keep it short, and start no task inside it (a task started there would share it).
- ``lock(*names)``: inside a transaction, wait until no other transaction holds one of ``names`` (such as
  ``("user", 42)``), and hold them until this one ends, so transactions that lock a name run one at a time,
  in every process. PostgreSQL takes transaction-scoped advisory locks (:func:`lock_key`); SQLite's transaction
  already holds the whole database (``BEGIN IMMEDIATE``), so there is nothing more to take.
- ``shared``: whether several processes may use the database at once (PostgreSQL), so what they share (rate
  limits) must be kept in it.

SQL is written once with SQLite's parameters (``?`` or ``:name``); the PostgreSQL backend numbers them
(:func:`bot.storage.sql.numbered`). Storage trouble is one of the :class:`~bot.errors.StorageError` classes on
both: busy (locked past the busy timeout, a serialization failure, too many connections), full, corrupt, or
failing (I/O, a lost connection); anything else (bad SQL, a broken constraint) is a bug and propagates as is.
"""

from __future__ import annotations

import hashlib
import logging
import re
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Protocol, Self

from bot.errors import StorageCorruptError, StorageError
from bot.storage.sql import Dialect, Params, Row

if TYPE_CHECKING:
    from collections.abc import Sequence

log = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


# A name a transaction may lock: what it is ("user", "guild", "queue"...) and which one.
LockName = tuple[str, int | str]


def lock_key(name: LockName) -> int:
    """The advisory lock key of ``name``: a stable signed 64-bit number (the same in every process and release),
    its first eight bytes of BLAKE2b. Two names sharing a key only wait for each other more than they must."""
    kind, which = name
    digest = hashlib.blake2b(f"encore:{kind}:{which}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class Backend(Protocol):
    """What the repositories, the web server's health check, the CLI and the wiring use of a database."""

    dialect: Dialect
    shared: bool  # several processes may use it at once

    @property
    def write_problem(self) -> StorageError | None:
        """Why the last write failed, until one works again (reported by ping, so by /healthz)."""
        ...

    @property
    def corruption(self) -> StorageCorruptError | None:
        """The database is damaged (a statement or an integrity check said so)."""
        ...

    @property
    def where(self) -> str:
        """The database for messages: the SQLite file's path, or the PostgreSQL URL without its password."""
        ...

    async def open(self, *, migrate: bool = True) -> None: ...

    async def close(self) -> None: ...

    async def ping(self, *, timeout_s: float = 2.0) -> None: ...

    async def read(self, sql: str, parameters: Params = ()) -> Sequence[Row]: ...

    async def read_one(self, sql: str, parameters: Params = ()) -> Row | None: ...

    async def write(self, sql: str, parameters: Params = (), *, quiet: bool = False) -> int: ...

    def transaction(self) -> AbstractAsyncContextManager[None]: ...

    async def lock(self, *names: LockName) -> None: ...

    async def schema_version(self) -> int: ...

    async def migrate(self) -> int: ...

    async def size_bytes(self) -> int: ...


class BackendBase:
    """What both backends share: ``async with`` (open, then close), and the state they report through ``ping``
    (the last refused write, and damage found)."""

    def __init__(self) -> None:
        self.write_problem: StorageError | None = None
        self.corruption: StorageCorruptError | None = None

    @property
    def where(self) -> str:
        raise NotImplementedError

    async def open(self, *, migrate: bool = True) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _write_refused(self, problem: StorageError, exc: BaseException) -> None:
        if isinstance(problem, StorageCorruptError):
            self._found_corruption(problem)
        if self.write_problem is None:
            log.error("database writes are failing (%s): %s; unfinished jobs wait and try again", problem.kind, exc)
        self.write_problem = problem

    def _write_worked(self) -> None:
        if self.write_problem is not None:
            log.warning("database writes work again (after: %s)", self.write_problem)
            self.write_problem = None

    def _found_corruption(self, problem: StorageCorruptError) -> None:
        if self.corruption is None:
            log.error("the database %s is damaged (%s): %s", self.where, problem, self._repair_advice)
        self.corruption = problem

    _repair_advice = "restore it from a backup"

    def _raise_problem(self) -> None:
        """Raise what makes the database unhealthy, if anything does."""
        problem = self.corruption or self.write_problem
        if problem is not None:
            raise type(problem)(detail=str(problem))


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(dialect: str = "sqlite") -> list[Migration]:
    """The packaged migrations of ``dialect`` in version order; versions must run 1, 2, 3, ... without gaps.

    SQLite's are the numbered files in ``migrations/``, PostgreSQL's their twins (same number, same name) in
    ``migrations/postgres/``.
    """
    folder = resources.files("bot.storage").joinpath("migrations")
    if dialect == "postgres":
        folder = folder.joinpath("postgres")
    migrations = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            migrations.append(Migration(int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    migrations.sort(key=lambda m: m.version)
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise RuntimeError(f"migration {migration.name} is out of sequence (expected {expected:04d})")
    return migrations
