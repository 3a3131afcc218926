"""SQL for ``bot_state``: small facts about the bot itself (paused or not, the commands last synced)."""

from __future__ import annotations

from bot.storage.backend import Backend


class StateRepo:
    def __init__(self, db: Backend) -> None:
        self._db = db

    async def get(self, key: str) -> str | None:
        row = await self._db.read_one("SELECT value FROM bot_state WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    async def put(self, key: str, value: str, *, now: float) -> None:
        await self._db.write(
            "INSERT INTO bot_state (key, value, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (key, value, now),
        )

    async def delete(self, key: str) -> bool:
        """Remove ``key``; True if it was there."""
        return await self._db.write("DELETE FROM bot_state WHERE key = ?", (key,)) > 0
