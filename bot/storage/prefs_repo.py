"""SQL for ``user_preferences``: each person's own defaults (``/music prefer``)."""

from __future__ import annotations

from bot.preferences import Preferences
from bot.storage.backend import Backend


class PreferencesRepo:
    def __init__(self, db: Backend) -> None:
        self._db = db

    async def get(self, user_id: int) -> Preferences:
        """The person's preferences (none set: empty)."""
        row = await self._db.read_one(
            "SELECT model, duration_s, format, count FROM user_preferences WHERE user_id = ?", (user_id,)
        )
        if row is None:
            return Preferences()
        return Preferences(model=row[0], duration_s=row[1], format=row[2], count=row[3])

    async def save(self, user_id: int, prefs: Preferences, *, now: float) -> None:
        """Store ``prefs`` as the person's, whole (what they don't set is cleared)."""
        await self._db.write(
            "INSERT INTO user_preferences (user_id, model, duration_s, format, count, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET model = excluded.model, "
            "duration_s = excluded.duration_s, format = excluded.format, count = excluded.count, "
            "updated_at = excluded.updated_at",
            (user_id, prefs.model, prefs.duration_s, prefs.format, prefs.count, now),
        )

    async def clear(self, user_id: int) -> bool:
        """Forget the person's preferences; True if they had any."""
        return await self._db.write("DELETE FROM user_preferences WHERE user_id = ?", (user_id,)) > 0
