"""A throwaway PostgreSQL server for the tests: the real thing, not a fake.

One server per test session (started when the first test asks for PostgreSQL) in a temporary directory: its
own ``initdb``, listening only on a Unix socket in that directory (no port, so sessions running side by side
never meet), with fsync off for speed. ``postgres`` refuses to run as root, so as root the server runs as
``nobody`` (through ``runuser``). Each test gets a fresh database, copied from a template that Encore's own
migrations built once (``CREATE DATABASE ... TEMPLATE``: tens of milliseconds), dropped after the test.

The binaries come from ``ENCORE_PG_BIN`` when set (and only from there), else the newest
``/usr/lib/postgresql/<version>/bin`` (Debian's packages), else ``initdb`` on the PATH. Without them the
PostgreSQL tests are skipped with :data:`INSTALL_HINT`, unless ``ENCORE_REQUIRE_POSTGRES=1`` (CI sets it) turns
that into a failure.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

BIN_ENV = "ENCORE_PG_BIN"
REQUIRE_ENV = "ENCORE_REQUIRE_POSTGRES"
INSTALL_HINT = (
    "PostgreSQL is not installed, so the PostgreSQL half of the storage tests is skipped: install it with "
    "`apt-get install postgresql` (Debian and Ubuntu; scripts/test does this itself when run as root), or set "
    f"{BIN_ENV} to the directory that holds initdb, pg_ctl and postgres"
)
TEMPLATE = "encore_template"
SUPERUSER = "encore"
# A second login that needs a password, for the tests that a password never shows.
PASSWORD_USER = "encore_pw"
_T = TypeVar("_T")
_VERSION_DIR = re.compile(r"^\d+(\.\d+)?$")


def find_bindir() -> Path | None:
    """Where ``initdb``, ``pg_ctl`` and ``postgres`` are (None: PostgreSQL is not installed)."""
    candidates: list[Path] = []
    if os.environ.get(BIN_ENV):  # where the operator says, and nowhere else
        candidates.append(Path(os.environ[BIN_ENV]))
        return _first_complete(candidates)
    versions = [p for p in Path("/usr/lib/postgresql").glob("*") if _VERSION_DIR.match(p.name)]
    candidates += [p / "bin" for p in sorted(versions, key=lambda p: float(p.name), reverse=True)]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    return _first_complete(candidates)


def _first_complete(candidates: list[Path]) -> Path | None:
    for candidate in candidates:
        if all((candidate / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return candidate
    return None


def postgres_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


class _AdminLoop:
    """An event loop on a thread of its own with one connection to the server, so that synchronous fixtures can
    create and drop databases whatever the test's own event loop is doing."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="postgres-admin", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


class PostgresServer:
    def __init__(self, bindir: Path, *, settings: str = "") -> None:
        """``settings``: more ``-c name=value`` options for the server (the benchmark loads
        pg_stat_statements)."""
        self.bindir = bindir
        self.settings = settings
        self.run_as = "nobody" if os.geteuid() == 0 else None
        # A short path: a Unix socket's path must fit in about 100 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="encore-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.password = "pw-" + secrets.token_hex(12)
        self._names = itertools.count(1)
        self._admin: _AdminLoop | None = None
        self._connection: asyncpg.Connection | None = None
        self._started = False

    # -- the server ------------------------------------------------------------------------------------

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.run_as is not None:
            command = ["runuser", "-u", self.run_as, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)  # noqa: S603
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr}\n{log}")

    def start(self) -> None:
        # Stopped by the session fixture; also at exit, should the session end without its teardown.
        atexit.register(self.stop)
        if self.run_as is not None:
            entry = pwd.getpwnam(self.run_as)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "--no-locale", "-E", "UTF8", "--no-sync"
        )
        # The password login must give its password; everyone else is trusted on this private socket.
        hba = self.data / "pg_hba.conf"
        hba.write_text(f"local all {PASSWORD_USER} scram-sha-256\nlocal all all trust\n")
        settings = (
            f"-c listen_addresses='' -c unix_socket_directories={self.root} -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=100 -c shared_buffers=32MB " + self.settings
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "120", "-o", settings, "start")
        self._started = True
        self._admin = _AdminLoop()
        self._admin.run(self._prepare())

    def stop(self) -> None:
        if self._admin is not None:
            with contextlib.suppress(Exception):
                self._admin.run(self._disconnect())
            self._admin.close()
            self._admin = None
        if self._started:
            with contextlib.suppress(Exception):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            self._started = False
        shutil.rmtree(self.root, ignore_errors=True)

    # -- databases -------------------------------------------------------------------------------------

    def url(self, database: str, *, user: str = SUPERUSER, password: str | None = None) -> str:
        login = f"{user}:{password}" if password else user
        return f"postgresql://{login}@/{database}?host={self.root}"

    def password_url(self, database: str) -> str:
        """A URL of the login that needs a password, with its password in it."""
        return self.url(database, user=PASSWORD_USER, password=self.password)

    def chown_to_server(self, path: Path) -> None:
        """Let the server's user own ``path`` (e.g. a directory for a tablespace)."""
        if self.run_as is not None:
            entry = pwd.getpwnam(self.run_as)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    @contextlib.contextmanager
    def fresh_database(self, *, migrated: bool = True, tablespace: str | None = None) -> Iterator[str]:
        """A new database, migrated (or empty), dropped at the end; yields its name."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        template = TEMPLATE if migrated else "template0"
        where = f" TABLESPACE {tablespace}" if tablespace else ""
        self._execute(f'CREATE DATABASE "{name}" TEMPLATE {template}{where} STRATEGY FILE_COPY')
        try:
            yield name
        finally:
            self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def execute(self, database: str, sql: str) -> None:
        """Run ``sql`` in ``database`` as the superuser (a test's setup, e.g. a role or a limit)."""
        assert self._admin is not None
        self._admin.run(self._execute_in(database, sql))

    def execute_admin(self, sql: str) -> None:
        """Run ``sql`` outside any test database (CREATE ROLE, CREATE TABLESPACE, ...)."""
        self._execute(sql)

    def _execute(self, sql: str) -> None:
        assert self._admin is not None
        self._admin.run(self._admin_execute(sql))

    async def _admin_execute(self, sql: str) -> None:
        assert self._connection is not None
        await self._connection.execute(sql)

    async def _execute_in(self, database: str, sql: str) -> None:
        connection = await asyncpg.connect(self.url(database))
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    async def _prepare(self) -> None:
        """The admin connection, the password login, and the template: an empty database that Encore's
        migrations bring up to date, as they would a real one."""
        from bot.storage.postgres import PostgresDatabase

        self._connection = connection = await asyncpg.connect(self.url("postgres"))
        await connection.execute(
            f"CREATE ROLE {PASSWORD_USER} LOGIN SUPERUSER PASSWORD '{self.password}'"  # a random hex value
        )
        await connection.execute(f"CREATE DATABASE {TEMPLATE} TEMPLATE template0")
        database = PostgresDatabase(self.url(TEMPLATE))
        await database.open()
        await database.close()

    async def _disconnect(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
