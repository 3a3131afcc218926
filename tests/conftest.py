"""Shared fixtures: settings pointing at a temporary data directory, the storage backend a test runs on, an open
database, the repo.

Storage: every test that uses ``db``, ``repo`` or a harness of the bot runs on SQLite, and also on PostgreSQL
when it (or its module: ``pytestmark``) carries ``@pytest.mark.both_backends``; the ``backend`` fixture says
which (``test_x[sqlite]``, ``test_x[postgres]``). PostgreSQL is a real server (tests/postgres.py), started once
per session, with a fresh database per test.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from bot.config import Settings
from bot.providers.plugins import Registry
from bot.providers.registry import PROVIDERS
from bot.storage.backend import Backend
from bot.storage.db import Database
from bot.storage.jobs_repo import JobsRepo
from bot.storage.postgres import PostgresDatabase
from tests.postgres import INSTALL_HINT, REQUIRE_ENV, PostgresServer, find_bindir, postgres_required

# Property-based tests: derandomized and without an example database, so the suite stays deterministic and
# leaves nothing behind; no deadline, since a loaded 2-core CI machine makes example timings meaningless.
hypothesis_settings.register_profile(
    "encore",
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
hypothesis_settings.load_profile("encore")


# No quotas or budgets unless a test is about them (a test sets just the ones it is about).
NO_LIMITS: dict[str, Any] = {
    "user_jobs_in_flight": 0,
    "user_daily_jobs": 0,
    "user_daily_audio_s": 0,
    "guild_daily_jobs": 0,
    "guild_daily_audio_s": 0,
    "guild_daily_budget_usd": 0,
    "daily_budget_usd": 0,
}


def make_settings(data_dir: Path, providers: Registry = PROVIDERS, /, **sections: dict[str, Any]) -> Settings:
    """Settings for tests: fast polling, no card throttle, data under ``data_dir``; the sections of the
    ``providers`` registry's (Encore's own unless told)."""
    base: dict[str, dict[str, Any]] = {
        "storage": {"dir": str(data_dir)},
        "jobs": {
            "poll_initial_s": 0.01,
            "poll_max_s": 0.05,
            "webhook_grace_s": 0.5,
            "retry_s": 0.01,
        },
        "discord": {"card_edit_interval_s": 0.0},
        "webhooks": {"host": "127.0.0.1", "port": 0},
        "limits": dict(NO_LIMITS),
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return providers.settings(base)


BACKENDS = ("sqlite", "postgres")


@dataclass(frozen=True)
class StorageBackend:
    """The database a test runs on: SQLite (a file in the test's directory) or a fresh PostgreSQL database."""

    name: str
    url: str | None = None  # PostgreSQL's (no password: the test server trusts its own socket)
    server: PostgresServer | None = None
    database_name: str | None = None

    @property
    def storage(self) -> dict[str, Any]:
        """The ``[storage]`` settings that choose this database (none for SQLite, the default)."""
        return {"url": self.url} if self.url else {}

    def database(self, sqlite_path: Path, *, busy_timeout_ms: int = 5000) -> Backend:
        """A backend object on this database, not yet open (SQLite: at ``sqlite_path``)."""
        if self.url is None:
            return Database(sqlite_path, busy_timeout_ms=busy_timeout_ms)
        return PostgresDatabase(self.url, busy_timeout_ms=busy_timeout_ms)

    @contextlib.asynccontextmanager
    async def opened(self, sqlite_path: Path, *, migrate: bool = True) -> AsyncIterator[Backend]:
        """:meth:`database`, open for the block (e.g. to look at what a stopped bot left)."""
        database = self.database(sqlite_path)
        await database.open(migrate=migrate)
        try:
            yield database
        finally:
            await database.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``@pytest.mark.both_backends``: run the test once on each backend."""
    if "backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_backends"):
        metafunc.parametrize("backend", BACKENDS, indirect=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = find_bindir()
    if bindir is None:
        if postgres_required():
            pytest.fail(f"{INSTALL_HINT} ({REQUIRE_ENV} is set: the PostgreSQL tests must run)", pytrace=False)
        pytest.skip(INSTALL_HINT)
    server = PostgresServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Iterator[StorageBackend]:
    """SQLite, unless the test is parametrised (``both_backends``) and this is its PostgreSQL run."""
    name = getattr(request, "param", "sqlite")
    if name == "sqlite":
        yield StorageBackend("sqlite")
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    with server.fresh_database() as database:
        yield StorageBackend("postgres", server.url(database), server, database)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/e2e carries the ``e2e`` marker, so ``-m "not e2e"`` runs the fast tests."""
    for item in items:
        if "e2e" in item.path.parts:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
async def db(tmp_path: Path, backend: StorageBackend) -> AsyncIterator[Backend]:
    database = backend.database(tmp_path / "test.sqlite3")
    await database.open()
    yield database
    await database.close()


@pytest.fixture
def repo(db: Backend) -> JobsRepo:
    return JobsRepo(db)
