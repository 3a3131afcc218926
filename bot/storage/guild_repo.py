"""SQL for ``guild_settings``: what each guild's admins have set."""

from __future__ import annotations

import json
import time

from bot.guild_settings import GuildSettings
from bot.storage.backend import Backend


class GuildRepo:
    def __init__(self, db: Backend) -> None:
        self._db = db

    async def get(self, guild_id: int) -> GuildSettings:
        row = await self._db.read_one("SELECT settings_json FROM guild_settings WHERE guild_id = ?", (guild_id,))
        return GuildSettings.model_validate(json.loads(row[0])) if row else GuildSettings()

    async def save(self, guild_id: int, settings: GuildSettings, *, by: int) -> None:
        await self._db.write(
            "INSERT INTO guild_settings (guild_id, settings_json, updated_at, updated_by) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (guild_id) DO UPDATE SET settings_json = excluded.settings_json, "
            "updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            (guild_id, settings.model_dump_json(), time.time(), by),
        )
