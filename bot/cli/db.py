"""``python -m bot db backup``, ``db stats`` and ``db migrate``: a safe copy of the database, what is in it, and
its schema brought up to date. Each works on SQLite and PostgreSQL, except a backup of PostgreSQL: that is
pg_dump's job, and ``db backup`` says so with the exact command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg

from bot.cli.render import EXIT_JOB_FAILED, EXIT_OK, EXIT_USAGE, human_age, human_size
from bot.config import Secrets, Settings, database_url
from bot.config.database import URL_ENV, url_without_password
from bot.errors import StorageError
from bot.storage.databases import database_for
from bot.storage.db import backup
from bot.storage.stats_repo import StatsRepo


def pg_dump_advice(url: str, path: Path) -> str:
    """What to run instead of ``db backup`` for a PostgreSQL database (no password in it)."""
    dbname = shlex.quote(url_without_password(url))
    return (
        "the database is PostgreSQL: back it up with pg_dump (safe while Encore runs; one consistent snapshot):\n"
        f"  pg_dump --format=custom --file={shlex.quote(str(path))} --dbname={dbname}\n"
        f"with the password in PGPASSWORD or ~/.pgpass (as in {URL_ENV}). To restore it, stop Encore, then:\n"
        f"  pg_restore --clean --if-exists --no-owner --dbname={dbname} {shlex.quote(str(path))}"
    )


async def backup_command(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    url = database_url(settings.storage.url, secrets.database_url)
    if url is not None:
        print(f"error: {pg_dump_advice(url, args.path)}", file=sys.stderr)
        return EXIT_USAGE
    source = settings.storage.database_path
    try:
        result = await backup(source, args.path, force=args.force, busy_timeout_ms=settings.storage.busy_timeout_ms)
    except FileExistsError:
        print(f"error: {args.path} exists; pass --force to replace it", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, sqlite3.Error) as exc:
        print(f"error: the backup failed: {exc}", file=sys.stderr)
        return EXIT_JOB_FAILED
    print(f"backed up {source} to {result.path} ({human_size(result.size)}, schema version {result.user_version})")
    return EXIT_OK


def _dir_usage(path: Path) -> tuple[int, int]:
    """(files, bytes) under ``path``; (0, 0) if it does not exist."""
    files = size = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                size += (Path(root) / name).stat().st_size
                files += 1
    return files, size


async def stats_command(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    storage = settings.storage
    url = database_url(storage.url, secrets.database_url)
    if url is None and not await asyncio.to_thread(storage.database_path.is_file):
        print(f"error: there is no database at {storage.database_path}", file=sys.stderr)
        return EXIT_JOB_FAILED
    db = database_for(storage, url)
    try:
        await db.open(migrate=False)  # the bot may be running: read, never change the schema under it
        version = await db.schema_version()
        if version == 0 and url is not None:
            print(
                f"error: the database {db.where} has no Encore tables yet: run `python -m bot db migrate` "
                "(or start Encore, which migrates it)",
                file=sys.stderr,
            )
            return EXIT_JOB_FAILED
        repo = StatsRepo(db)
        counts = await repo.counts_by_model_and_status()
        oldest = await repo.oldest_active()
        db_bytes = await db.size_bytes()
    except (sqlite3.Error, asyncpg.PostgresError, StorageError) as exc:
        print(f"error: can't read the database at {db.where}: {exc}", file=sys.stderr)
        return EXIT_JOB_FAILED
    finally:
        await db.close()
    by_status: dict[str, int] = {}
    by_model: dict[str, int] = {}
    for model, status, count in counts:
        by_status[status.value] = by_status.get(status.value, 0) + count
        by_model[model] = by_model.get(model, 0) + count
    dirs = {"outputs": storage.outputs_dir, "inputs": storage.inputs_dir, "uploads": storage.uploads_dir}
    usage = {name: await asyncio.to_thread(_dir_usage, where) for name, where in dirs.items()}
    stats: dict[str, Any] = {
        "database": {
            "backend": db.dialect.name,
            "path" if url is None else "url": db.where,
            "bytes": db_bytes,
            "schema_version": version,
        },
        "jobs": {"total": sum(by_status.values()), "by_status": by_status, "by_model": by_model},
        "oldest_active_job": None,
        "directories": {
            name: {"path": str(dirs[name]), "files": files, "bytes": size} for name, (files, size) in usage.items()
        },
    }
    if oldest is not None:
        stats["oldest_active_job"] = {
            "id": oldest.id,
            "model": oldest.model,
            "status": oldest.status.value,
            "created_at": oldest.created_at,
            "age_s": round(time.time() - oldest.created_at, 1),
        }
    if args.json:
        print(json.dumps(stats, indent=2))
        return EXIT_OK

    def listing(counts: dict[str, int]) -> str:
        return ", ".join(f"{name} {count}" for name, count in sorted(counts.items())) or "none"

    lines = [
        f"database   {db.where} ({db.dialect.name}, {human_size(db_bytes)}, schema version {version})",
        f"jobs       {stats['jobs']['total']}",
        f"  by status: {listing(by_status)}",
        f"  by model:  {listing(by_model)}",
    ]
    if oldest is None:
        lines.append("oldest unfinished job: none")
    else:
        lines.append(
            f"oldest unfinished job: {oldest.id} ({oldest.model}, {oldest.status.value}), "
            f"queued {human_age(time.time() - oldest.created_at)} ago"
        )
    for name, (files, size) in usage.items():
        lines.append(f"{name:<10} {dirs[name]}: {files} file(s), {human_size(size)}")
    print("\n".join(lines))
    return EXIT_OK


async def migrate_command(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    """Bring the database's schema up to date (what Encore also does when it starts)."""
    db = database_for(settings.storage, database_url(settings.storage.url, secrets.database_url))
    await db.open(migrate=False)
    try:
        before = await db.schema_version()
    finally:
        await db.close()
    await db.open()  # migrates, as at startup
    try:
        after = await db.schema_version()
    finally:
        await db.close()
    done = f"applied {after - before} migration(s)" if after > before else "already up to date"
    print(f"database {db.where}: schema version {after} ({done})")
    return EXIT_OK
