"""Which backend the settings choose: PostgreSQL when a URL is given, else SQLite in ``[storage] dir``."""

from __future__ import annotations

from bot.config import StorageSettings
from bot.storage.backend import Backend
from bot.storage.db import Database
from bot.storage.postgres import PostgresDatabase


def database_for(storage: StorageSettings, url: str | None = None, *, name: str = "encore") -> Backend:
    """The backend, not yet open: PostgreSQL at ``url`` (see :func:`bot.config.database_url`), else SQLite.
    ``name``: what PostgreSQL shows as the connections' ``application_name`` (which process holds them)."""
    if url:
        return PostgresDatabase(
            url, pool_size=storage.pool_size, busy_timeout_ms=storage.busy_timeout_ms, application_name=name
        )
    return Database(
        storage.database_path,
        busy_timeout_ms=storage.busy_timeout_ms,
        integrity_check_s=storage.integrity_check_s,
    )
