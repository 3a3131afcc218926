"""SQL for ``guild_settings``: what each guild's admins have set.

With a notifier, a server's settings are kept in memory once read (every new job reads them) and forgotten
when any process sharing the database saves new ones: :meth:`GuildRepo.save` announces the server on the
``guild_settings`` channel, and every process's repo drops it (all of them, when notices may have been lost).
"""

from __future__ import annotations

import json
import logging
import time

from bot.errors import StorageError
from bot.guild_settings import GuildSettings
from bot.storage.backend import Backend
from bot.storage.notify import Notice, Notifier

log = logging.getLogger(__name__)

CHANNEL = "guild_settings"
_KEPT = 10_000  # servers whose settings are kept in memory at most (then forgotten all at once)


class GuildRepo:
    def __init__(self, db: Backend, notifier: Notifier | None = None) -> None:
        """``notifier``: keep settings in memory, forgotten when any process announces a change (None: always
        read them from the database)."""
        self._db = db
        self._notifier = notifier
        self._kept: dict[int, GuildSettings] = {}
        self._changes = 0  # bumped by every change heard: a read that started before one is not kept
        if notifier is not None:
            notifier.subscribe(CHANNEL, self._heard)

    async def get(self, guild_id: int) -> GuildSettings:
        if self._notifier is None:
            return await self._read(guild_id)
        kept = self._kept.get(guild_id)
        if kept is not None:
            return kept
        changes = self._changes
        settings = await self._read(guild_id)
        if changes == self._changes:  # no change was heard while it was read: it is current
            if len(self._kept) >= _KEPT:
                self._kept.clear()
            self._kept[guild_id] = settings
        return settings

    async def _read(self, guild_id: int) -> GuildSettings:
        row = await self._db.read_one("SELECT settings_json FROM guild_settings WHERE guild_id = ?", (guild_id,))
        return GuildSettings.model_validate(json.loads(row[0])) if row else GuildSettings()

    async def save(self, guild_id: int, settings: GuildSettings, *, by: int) -> None:
        await self._db.write(
            "INSERT INTO guild_settings (guild_id, settings_json, updated_at, updated_by) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (guild_id) DO UPDATE SET settings_json = excluded.settings_json, "
            "updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            (guild_id, settings.model_dump_json(), time.time(), by),
        )
        if self._notifier is None:
            return
        self._forget(guild_id)
        try:
            await self._notifier.publish(CHANNEL, str(guild_id))
        except StorageError as exc:  # saved: the others read it again within [storage] recheck_s
            log.warning("the other processes will see server %s's new settings late: %s", guild_id, exc)

    def _forget(self, guild_id: int | None) -> None:
        self._changes += 1
        if guild_id is None:
            self._kept.clear()
        else:
            self._kept.pop(guild_id, None)

    async def _heard(self, notice: Notice) -> None:
        """A server's settings changed in some process (or notices may have been lost: forget them all)."""
        self._forget(int(notice.payload) if notice.payload.isdigit() and not notice.missed else None)
