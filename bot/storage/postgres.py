"""The PostgreSQL backend: a pool of ``asyncpg`` connections behind the interface SQLite's backend has too
(``backend``), for several Encore processes sharing one database.

SQL comes with SQLite's parameters and is numbered for PostgreSQL once per text (``sql.numbered``). Reads and
writes outside a transaction each take a pooled connection for one statement; :meth:`transaction` keeps one
connection for the task that opened it. Migrations are the files in ``migrations/postgres/`` (twins of
SQLite's), recorded one row each in ``schema_version``; each is applied in its own transaction under an
advisory lock, so processes that start together migrate once.

Storage trouble becomes the :class:`~bot.errors.StorageError` SQLite's would: a lock waited for past the busy
timeout (``lock_timeout``), a serialization failure or deadlock, a cancelled statement or too many connections
are *busy*; a full disk is *full*; damaged data or index pages are *corrupt*; a lost connection, a server
shutting down or in recovery, a read-only server (a standby after a failover) and I/O errors are *failing*.
Everything else (bad SQL, a broken constraint) is a bug and propagates as is. The URL's password never
reaches a message: they show :attr:`PostgresDatabase.where`, the URL masked, and the password is masked in
every log line.

PostgreSQL's text can't hold the NUL character, and its JSON functions refuse a document that holds one
escaped (``\u0000``) or half a surrogate pair (``\ud800`` alone), wherever it is in the document: the lineage
index parses every job's request, so one such character in a hostile text would refuse the whole insert.
:func:`storable` writes U+FFFD (the replacement character) in their place, in every text parameter (as raw
characters) and in every JSON document (as escapes); SQLite keeps them as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import unquote

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from bot.config.database import URL_ENV, mask_url, url_password
from bot.errors import StartupError, StorageBusyError, StorageCorruptError, StorageError
from bot.logs import register_secret
from bot.storage.backend import BackendBase, LockName, load_migrations, lock_key
from bot.storage.postgres_values import connection_lost, storable, storage_error
from bot.storage.sql import POSTGRES, Params, arguments

log = logging.getLogger(__name__)

_Connection = asyncpg.Connection | PoolConnectionProxy

# The advisory lock key migrations hold ("encore" in ASCII), so processes starting together migrate once.
MIGRATION_LOCK = 0x656E636F7265
_SCHEMA_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at double precision NOT NULL
)"""


def _arguments(sql: str, parameters: Params) -> tuple[str, list[Any]]:
    """``sql`` numbered for PostgreSQL, and its parameters in that order, as PostgreSQL can keep them."""
    text, values = arguments(sql, parameters)
    return text, [storable(value) for value in values]


def _close_for_good(connection: _Connection) -> None:
    """Close a connection found lost, so the pool makes a new one rather than hand it out again (asyncpg may not
    have noticed yet). One asyncpg already took back from us needs nothing."""
    with contextlib.suppress(asyncpg.InterfaceError):
        connection.terminate()


async def _keep_session(connection: asyncpg.Connection) -> None:
    """What the pool does to a connection given back, after asyncpg has rolled back any transaction left open:
    nothing more. asyncpg's default resets the session (advisory locks, cursors, LISTEN, settings) with one
    more round trip per release, which doubled the statements a job costs; Encore's pooled connections keep
    no session state to reset: its advisory locks are transaction-scoped (:meth:`PostgresDatabase.lock`), it
    listens on a connection of its own (``notify``), and it never changes a setting after connecting."""


def _rows_changed(status: str) -> int:
    """How many rows a command changed, from its status (``UPDATE 3``, ``INSERT 0 1``, ``DELETE 0``)."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class PostgresDatabase(BackendBase):
    """The PostgreSQL backend. Use :meth:`open` and :meth:`close` (or ``async with``)."""

    dialect = POSTGRES
    shared = True  # several Encore processes may share it
    _repair_advice = "see the server's log; REINDEX a damaged index, or restore from a backup (pg_dump)"

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        busy_timeout_ms: int = 5000,
        connect_timeout_s: float = 10.0,
        application_name: str = "encore",
    ) -> None:
        """``busy_timeout_ms`` is PostgreSQL's ``lock_timeout``: how long a statement waits for a row or table
        lock that another connection holds before it is refused as busy (as SQLite's busy timeout).
        ``application_name``: what ``pg_stat_activity`` shows for this process's connections."""
        super().__init__()
        self.url = url
        self.application_name = application_name[:63]
        self.pool_size = pool_size
        self.busy_timeout_ms = busy_timeout_ms
        self.connect_timeout_s = connect_timeout_s
        self._pool: asyncpg.Pool | None = None
        # The connection of the transaction the current task is in, if any.
        self._connection: contextvars.ContextVar[_Connection | None] = contextvars.ContextVar(
            f"encore_pg_tx_{id(self)}", default=None
        )
        self._lost = False  # the last refused write lost its connection (a good ping clears it)
        self._password = url_password(url)
        if self._password:
            register_secret(f"{URL_ENV} password", self._password)
            register_secret(f"{URL_ENV} password", unquote(self._password))

    @property
    def where(self) -> str:
        return mask_url(self.url)

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("database is not open")
        return self._pool

    async def open(self, *, migrate: bool = True) -> None:
        """Connect (one connection at first, up to ``pool_size``) and apply pending migrations
        (``migrate=False``: leave the schema alone)."""
        try:
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=self.pool_size,
                timeout=self.connect_timeout_s,
                reset=_keep_session,
                server_settings={
                    "application_name": self.application_name,
                    "lock_timeout": f"{max(1, self.busy_timeout_ms)}ms",
                },
            )
        except Exception as exc:
            raise self._unusable(exc) from None
        try:
            if migrate:
                await self.migrate()
        except BaseException as exc:
            await self.close()
            if isinstance(exc, asyncpg.PostgresError | StorageError | OSError):
                raise self._unusable(exc) from None
            raise

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    def _unusable(self, exc: BaseException) -> StartupError:
        """Why the database can't be opened, and what to do about it, in one line (never with the password)."""
        problem = storage_error(exc) if not isinstance(exc, StorageError) else exc
        reason = str(exc) or type(exc).__name__
        if self._password:
            reason = reason.replace(self._password, "***").replace(unquote(self._password), "***")
        where = self.where
        if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError | asyncpg.InvalidPasswordError):
            message = (
                f"PostgreSQL refused the login to {where} ({reason}): check the user and the password "
                f"({URL_ENV}, PGPASSWORD or ~/.pgpass)"
            )
        elif isinstance(exc, asyncpg.InvalidCatalogNameError):
            message = f"the database {where} does not exist ({reason}): create it (createdb), or fix the URL"
        elif isinstance(problem, StorageBusyError):
            message = f"the database {where} is busy ({reason}): try again, or raise the server's max_connections"
        elif connection_lost(exc):
            message = (
                f"can't reach the database server {where} ({reason}): check [storage] url or {URL_ENV}, "
                "and that PostgreSQL is running"
            )
        else:
            message = f"can't use the database {where} ({reason})"
        return StartupError(message, detail=reason)

    async def ping(self, *, timeout_s: float = 2.0) -> None:
        """Raise unless the database answers ``SELECT 1`` within ``timeout_s``, is not damaged and takes writes
        (for health checks). A write refused for a lost connection is forgiven once the server answers again;
        other refusals are reported until a write works again, as on SQLite."""
        async with asyncio.timeout(timeout_s):
            await self.read("SELECT 1")
        if self._lost and self.write_problem is not None:
            log.warning("the database answers again (after: %s)", self.write_problem)
            self.write_problem, self._lost = None, False
        self._raise_problem()

    @contextlib.asynccontextmanager
    async def _statement_connection(self) -> AsyncIterator[_Connection]:
        """The connection for one statement: the task's transaction's, else one from the pool. A connection
        found lost is closed for good, so the pool never hands it to the next caller."""
        connection = self._connection.get()
        if connection is not None:
            yield connection
            return
        async with self.pool.acquire() as connection:
            try:
                yield connection
            except Exception as exc:
                if connection_lost(exc):
                    _close_for_good(connection)
                raise

    async def read(self, sql: str, parameters: Params = ()) -> Sequence[asyncpg.Record]:
        """Every row of a query. Outside a transaction, a query that lost its connection (a server restart,
        a failover) is asked once more on another."""
        query, args = _arguments(sql, parameters)
        in_transaction = self._connection.get() is not None
        for attempt in (1, 2):
            try:
                async with self._statement_connection() as connection:
                    return await connection.fetch(query, *args)
            except Exception as exc:
                problem = storage_error(exc)
                if problem is None:
                    raise
                if attempt == 1 and not in_transaction and connection_lost(exc):
                    log.info("a database connection was lost (%s); asking again", exc)
                    continue
                if isinstance(problem, StorageCorruptError):
                    self._found_corruption(problem)
                raise problem from exc
        raise AssertionError("unreachable")

    async def read_one(self, sql: str, parameters: Params = ()) -> asyncpg.Record | None:
        rows = await self.read(sql, parameters)
        return rows[0] if rows else None

    async def write(self, sql: str, parameters: Params = (), *, quiet: bool = False) -> int:
        """Run one statement that changes data; it is stored whole or not at all. Returns how many rows it
        changed. Storage trouble raises a :class:`StorageError`, logged once for the operator; a later write
        that changes rows says writes work again. A ``quiet`` write (bookkeeping: a heartbeat, a rate limit)
        tells health nothing."""
        query, args = _arguments(sql, parameters)
        try:
            async with self._statement_connection() as connection:
                status = await connection.execute(query, *args)
        except Exception as exc:
            problem = storage_error(exc)
            if problem is None:
                raise
            if not quiet:
                self._lost = connection_lost(exc)
                self._write_refused(problem, exc)
            raise problem from exc
        changed = _rows_changed(status)
        if changed > 0 and not quiet:
            self._write_worked()
            self._lost = False
        return changed

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """One transaction (READ COMMITTED) for every statement this task runs inside the block (see
        ``backend``); a nested block joins the outer one. Trouble at BEGIN or COMMIT (a serialization
        failure, a lost connection) raises a :class:`StorageError`, and nothing of the transaction is kept."""
        if self._connection.get() is not None:
            yield
            return
        try:
            async with self.pool.acquire() as connection:
                try:
                    async with connection.transaction():
                        token = self._connection.set(connection)
                        try:
                            yield
                        finally:
                            self._connection.reset(token)
                except Exception as exc:
                    if connection_lost(exc):
                        _close_for_good(connection)
                    raise
        except Exception as exc:
            problem = storage_error(exc)
            if problem is None:
                raise
            self._write_refused(problem, exc)
            raise problem from exc

    async def lock(self, *names: LockName) -> None:
        """Take a transaction-scoped advisory lock on each of ``names`` (:func:`~bot.storage.backend.lock_key`),
        in the order of their keys, so transactions locking overlapping names never wait for each other in a
        circle; each is held until the transaction ends (a lost connection ends it too). A wait past the busy
        timeout (``lock_timeout``) is refused as busy. Only inside :meth:`transaction`."""
        if self._connection.get() is None:
            raise RuntimeError("lock() holds its names until the transaction ends: call it inside transaction()")
        for key in sorted({lock_key(name) for name in names}):
            await self.read("SELECT 1 FROM pg_advisory_xact_lock(?)", (key,))

    async def schema_version(self) -> int:
        """The newest migration applied (0: none, not even the ``schema_version`` table)."""
        row = await self.read_one("SELECT to_regclass('schema_version') IS NOT NULL")
        if row is None or not row[0]:
            return 0
        row = await self.read_one("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        return int(row[0]) if row else 0

    async def size_bytes(self) -> int:
        row = await self.read_one("SELECT pg_database_size(current_database())")
        return int(row[0]) if row else 0

    async def migrate(self) -> int:
        """Apply pending migrations, each in its own transaction under the migration lock. Returns the new
        version."""
        migrations = load_migrations("postgres")
        try:
            async with self.pool.acquire() as connection:
                while True:
                    async with connection.transaction():
                        await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
                        await connection.execute(_SCHEMA_TABLE)
                        current = int(await connection.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version"))
                        if current > len(migrations):
                            raise StartupError(
                                f"the database {self.where} is at schema version {current}, newer than this "
                                f"Encore ({len(migrations)}): run the newer Encore, or restore a backup made by "
                                "this version"
                            )
                        if current == len(migrations):
                            return current
                        migration = migrations[current]
                        log.info("applying migration %s", migration.name)
                        await connection.execute(migration.sql)
                        await connection.execute(
                            "INSERT INTO schema_version (version, name, applied_at) VALUES ($1, $2, $3)",
                            migration.version,
                            migration.name,
                            time.time(),
                        )
        except Exception as exc:
            problem = storage_error(exc)
            if problem is None:
                raise
            raise problem from exc
