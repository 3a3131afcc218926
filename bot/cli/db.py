"""``python -m bot db backup`` and ``db stats``: a safe copy of the database, and what is in it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from bot.cli.render import EXIT_JOB_FAILED, EXIT_OK, EXIT_USAGE, human_age, human_size
from bot.config import Settings
from bot.storage.db import Database, backup, files_size
from bot.storage.stats_repo import StatsRepo


async def backup_command(args: argparse.Namespace, settings: Settings) -> int:
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


async def stats_command(args: argparse.Namespace, settings: Settings) -> int:
    storage = settings.storage
    path = storage.database_path
    if not await asyncio.to_thread(path.is_file):
        print(f"error: there is no database at {path}", file=sys.stderr)
        return EXIT_JOB_FAILED
    db = Database(path, busy_timeout_ms=storage.busy_timeout_ms)
    try:
        await db.open(migrate=False)  # the bot may be running: read, never change the schema under it
        repo = StatsRepo(db)
        version = await db.user_version()
        counts = await repo.counts_by_model_and_status()
        oldest = await repo.oldest_active()
    except sqlite3.Error as exc:
        print(f"error: can't read the database at {path}: {exc}", file=sys.stderr)
        return EXIT_JOB_FAILED
    finally:
        await db.close()
    by_status: dict[str, int] = {}
    by_model: dict[str, int] = {}
    for model, status, count in counts:
        by_status[status.value] = by_status.get(status.value, 0) + count
        by_model[model] = by_model.get(model, 0) + count
    db_bytes = await asyncio.to_thread(files_size, path)
    dirs = {name: storage.dir / name for name in ("outputs", "inputs", "uploads")}
    usage = {name: await asyncio.to_thread(_dir_usage, where) for name, where in dirs.items()}
    stats: dict[str, Any] = {
        "database": {"path": str(path), "bytes": db_bytes, "schema_version": version},
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
        f"database   {path} ({human_size(db_bytes)}, schema version {version})",
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
