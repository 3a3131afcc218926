"""Choosing the database: `[storage] url` (never with a password) or ENCORE_DATABASE_URL (a secret); neither
the file, nor check-config, nor an error, nor a log line ever shows a password."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.config import Secrets, database_url, describe, load_settings, mask_url
from bot.config.database import url_password, url_without_password
from bot.errors import ConfigError
from bot.logs import MASKER, SecretMasker
from bot.storage.databases import database_for
from bot.storage.db import Database
from bot.storage.postgres import PostgresDatabase

SECRET = "hunter2-the-password"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("ENCORE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[storage]\nurl = "{url}"\n', encoding="utf-8")
    return path


def test_sqlite_is_the_default(tmp_path: Path) -> None:
    settings = load_settings(None)
    assert settings.storage.url == ""
    assert database_url(settings.storage.url, None) is None
    db = database_for(settings.storage, None)
    assert isinstance(db, Database)
    assert db.path == Path("data") / "encore.sqlite3"


def test_a_postgresql_url_in_the_file_chooses_postgresql(tmp_path: Path) -> None:
    settings = load_settings(config(tmp_path, "postgresql://encore@db.example.com:5432/encore"))
    url = database_url(settings.storage.url, None)
    assert url == "postgresql://encore@db.example.com:5432/encore"
    db = database_for(settings.storage, url)
    assert isinstance(db, PostgresDatabase)
    assert (db.where, db.pool_size, db.busy_timeout_ms) == (url, 10, 5000)


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://encore:{SECRET}@db/encore",
        f"postgres://db/encore?sslmode=require&password={SECRET}",
    ],
)
def test_a_password_in_the_settings_is_refused_without_being_quoted(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(config(tmp_path, url))
    message = refused.value.user_message
    assert "[storage] url: Value error, holds a password: put the whole URL in ENCORE_DATABASE_URL" in message
    assert SECRET not in message


@pytest.mark.parametrize("url", ["mysql://db/encore", "sqlite:///data/encore.sqlite3", "postgresql://db:port/x"])
def test_anything_but_a_postgresql_url_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError, match=r"\[storage\] url: Value error, must be a PostgreSQL URL"):
        load_settings(config(tmp_path, url))


def test_the_environment_url_wins_and_stays_hidden(tmp_path: Path) -> None:
    settings = load_settings(config(tmp_path, "postgresql://encore@file-host/encore"))
    secret_url = f"postgresql://encore:{SECRET}@env-host:6432/encore"
    secrets = Secrets.from_env({"ENCORE_DATABASE_URL": secret_url})
    assert database_url(settings.storage.url, secrets.database_url) == secret_url
    text = describe(settings, secrets) + repr(secrets) + str(secrets)
    assert "# ENCORE_DATABASE_URL: set (hidden)" in text
    assert 'url = "postgresql://encore@file-host/encore"' in text
    assert SECRET not in text
    db = database_for(settings.storage, secret_url)
    assert db.where == "postgresql://encore:***@env-host:6432/encore"
    masker = SecretMasker.from_env({"ENCORE_DATABASE_URL": secret_url})  # what every log handler does
    assert masker.mask(f"connecting to {secret_url}") == "connecting to ***ENCORE_DATABASE_URL***"


def test_a_malformed_environment_url_is_refused_without_being_quoted() -> None:
    secrets = Secrets.from_env({"ENCORE_DATABASE_URL": f"mysql://root:{SECRET}@db/encore"})
    with pytest.raises(ConfigError) as refused:
        database_url("", secrets.database_url)
    assert refused.value.user_message.startswith("ENCORE_DATABASE_URL must be a PostgreSQL URL")
    assert SECRET not in refused.value.user_message


def test_pgpassword_is_masked_in_logs() -> None:
    masker = SecretMasker.from_env({"PGPASSWORD": SECRET})
    assert masker.mask(f"password {SECRET}!") == "password ***PGPASSWORD***!"


@pytest.mark.parametrize(
    ("url", "masked", "plain"),
    [
        ("postgresql://u:p%40ss@h:5432/db", "postgresql://u:***@h:5432/db", "postgresql://u@h:5432/db"),
        (
            "postgresql://u@/db?host=/run/postgresql&password=x",
            "postgresql://u@/db?host=/run/postgresql&password=***",
            "postgresql://u@/db?host=/run/postgresql",
        ),
        ("postgresql:///db?password=x", "postgresql:///db?password=***", "postgresql:///db"),
        ("postgres://h/db", "postgres://h/db", "postgres://h/db"),
    ],
)
def test_urls_are_shown_masked_and_given_to_pg_dump_without_the_password(url: str, masked: str, plain: str) -> None:
    assert (mask_url(url), url_without_password(url)) == (masked, plain)
    assert (url_password(url) is not None) == (url != plain)


def test_the_password_of_a_url_is_masked_in_logs_once_the_backend_exists() -> None:
    url = f"postgresql://encore:{SECRET}%21@db/encore"  # percent-encoded in the URL: "hunter2-the-password!"
    PostgresDatabase(url)
    assert SECRET not in MASKER.mask(f"auth failed for {SECRET}! ({url})")
