"""Retention: nothing in the data directory grows without bound.

Once an hour (``[storage] cleanup_interval_s``) the janitor
- forgets handled webhook ids older than ``keep_webhook_ids_hours`` (they only guard against redeliveries,
  and a signed webhook's signature is valid for five minutes);
- deletes audio files (finished tracks, stems, images, clips people handed in) that no job needs any more: a
  file is kept while a job made in the last ``keep_files_days`` or an unfinished job names it, so Extend,
  Full track, Stems and Retry keep working for that long; ``0`` keeps files forever;
- deletes files a provider uploaded (a Cog server's outputs) that no job took (a server that uploaded more
  than its outputs, or for a job that ended) an hour after they arrived.

Files are judged by the database and by their age on disk together: a file written in the last hour is
never touched, so one that a job is about to record can't be swept away in between. Job rows stay: they
are small, and history and quotas read them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.background import OwnedTask
from bot.config import StorageSettings
from bot.errors import StorageError
from bot.storage.jobs_repo import JobsRepo

log = logging.getLogger(__name__)

# Files younger than this are never deleted: a job may be about to record them.
_GRACE_S = 3600.0
DAY_S = 86_400.0

# prediction id -> whether an unfinished job is still waiting for its uploads
UploadCheck = Callable[[str], Awaitable[bool]]


@dataclass(frozen=True)
class Swept:
    files: int = 0
    bytes: int = 0
    webhook_ids: int = 0


class Janitor:
    def __init__(
        self,
        repo: JobsRepo,
        settings: StorageSettings,
        *,
        uploads_dirs: Sequence[Path] = (),
        expects_upload: UploadCheck | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._repo = repo
        self._settings = settings
        self._uploads_dirs = tuple(uploads_dirs)  # where providers' uploads are kept
        self._expects_upload = expects_upload
        self._clock = clock
        self._task = OwnedTask("retention")

    def start(self) -> None:
        self._task.start(self._run)

    async def stop(self) -> None:
        await self._task.stop()

    async def _run(self) -> None:
        while True:
            # First a wait: a bot that starts has more urgent work (resuming jobs) than cleaning up.
            await asyncio.sleep(self._settings.cleanup_interval_s)
            try:
                swept = await self.sweep()
                if swept.files or swept.webhook_ids:
                    log.info(
                        "clean-up: deleted %d file(s) (%d bytes) and %d webhook id(s)",
                        swept.files,
                        swept.bytes,
                        swept.webhook_ids,
                    )
            except StorageError as exc:
                log.warning("clean-up skipped: %s", exc)
            except Exception:
                log.exception("clean-up failed")

    async def sweep(self) -> Swept:
        """One clean-up pass (the loop runs this; tests call it directly)."""
        now = self._clock()
        webhook_ids = await self._repo.prune_webhooks(now - self._settings.keep_webhook_ids_hours * 3600)
        files = size = 0
        if self._settings.keep_files_days > 0:
            made_since = now - self._settings.keep_files_days * DAY_S
            in_use = await self._repo.paths_in_use(made_since=made_since)
            roots = [self._settings.outputs_dir, self._settings.inputs_dir]
            files, size = await asyncio.to_thread(_delete_old, roots, made_since, in_use)
        for uploads_dir in self._uploads_dirs:
            more, more_size = await self._sweep_uploads(uploads_dir, now - _GRACE_S)
            files, size = files + more, size + more_size
        return Swept(files=files, bytes=size, webhook_ids=webhook_ids)

    async def _sweep_uploads(self, uploads_dir: Path, older_than: float) -> tuple[int, int]:
        folders = await asyncio.to_thread(_folders, uploads_dir)
        files = size = 0
        for folder in folders:
            if self._expects_upload is not None and await self._expects_upload(folder.name):
                continue
            deleted, deleted_size = await asyncio.to_thread(_delete_old, [folder], older_than, set())
            files, size = files + deleted, size + deleted_size
            if deleted:
                await asyncio.to_thread(_remove_if_empty, folder)
        return files, size


def _folders(root: Path) -> list[Path]:
    try:
        return [entry for entry in root.iterdir() if entry.is_dir()]
    except FileNotFoundError:
        return []


def _delete_old(roots: list[Path], older_than: float, keep: set[str]) -> tuple[int, int]:
    """Delete files under ``roots`` last written before ``older_than`` and not in ``keep``, then the folders
    that leaves empty. Returns (files, bytes) deleted."""
    keep = {os.path.abspath(path) for path in keep}
    cutoff = min(older_than, time.time() - _GRACE_S)
    files = size = 0
    for root in roots:
        for folder, _, names in os.walk(root, topdown=False):
            for name in names:
                path = os.path.join(folder, name)
                try:
                    stat = os.stat(path)
                    if stat.st_mtime >= cutoff or os.path.abspath(path) in keep:
                        continue
                    os.unlink(path)
                except FileNotFoundError:
                    continue
                files, size = files + 1, size + stat.st_size
            if folder != str(root):
                _remove_if_empty(Path(folder))
    return files, size


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not empty: something arrived in it meanwhile
        folder.rmdir()
