"""Shared fixtures: settings pointing at a temporary data directory, an open database, the repo."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from bot.config import Settings
from bot.storage.db import Database
from bot.storage.jobs_repo import JobsRepo

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


def make_settings(data_dir: Path, **sections: dict[str, Any]) -> Settings:
    """Settings for tests: fast polling, no card throttle, data under ``data_dir``."""
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
    return Settings.model_validate(base)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/e2e carries the ``e2e`` marker, so ``-m "not e2e"`` runs the fast tests."""
    for item in items:
        if "e2e" in item.path.parts:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(tmp_path / "test.sqlite3")
    await database.open()
    yield database
    await database.close()


@pytest.fixture
def repo(db: Database) -> JobsRepo:
    return JobsRepo(db)
