"""SQL for the ``loops`` table: which loops of delivered tracks were made, and where they were posted."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from bot.storage.backend import Backend


class LoopRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    job_id: str
    bars: int
    channel_id: int
    guild_id: int | None
    user_id: int
    token: str
    claimed_at: float
    message_id: int | None


class LoopsRepo:
    def __init__(self, db: Backend) -> None:
        self._db = db

    async def get(self, job_id: str, bars: int, channel_id: int) -> LoopRecord | None:
        row = await self._db.read_one(
            "SELECT job_id, bars, channel_id, guild_id, user_id, token, claimed_at, message_id FROM loops "
            "WHERE job_id = ? AND bars = ? AND channel_id = ?",
            (job_id, bars, channel_id),
        )
        return None if row is None else LoopRecord.model_validate(dict(row))

    async def claim(self, record: LoopRecord, *, abandoned_before: float) -> bool:
        """Take the making of a loop: True if no one holds it (or whoever did gave up before
        ``abandoned_before`` without posting it); False if it is posted or being made."""
        changed = await self._db.write(
            "INSERT INTO loops (job_id, bars, channel_id, guild_id, user_id, token, claimed_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (job_id, bars, channel_id) DO UPDATE SET "
            "user_id = excluded.user_id, token = excluded.token, claimed_at = excluded.claimed_at "
            "WHERE loops.message_id IS NULL AND loops.claimed_at < ?",
            (
                record.job_id,
                record.bars,
                record.channel_id,
                record.guild_id,
                record.user_id,
                record.token,
                record.claimed_at,
                abandoned_before,
            ),
        )
        return changed > 0

    async def posted(self, record: LoopRecord, message_id: int) -> bool:
        """Record where the loop was posted, if ``record``'s claim still holds."""
        changed = await self._db.write(
            "UPDATE loops SET message_id = ? WHERE job_id = ? AND bars = ? AND channel_id = ? AND token = ? "
            "AND message_id IS NULL",
            (message_id, record.job_id, record.bars, record.channel_id, record.token),
        )
        return changed > 0

    async def release(self, record: LoopRecord) -> None:
        """Give up ``record``'s claim (the loop could not be made or posted): the next click makes it again."""
        await self._db.write(
            "DELETE FROM loops WHERE job_id = ? AND bars = ? AND channel_id = ? AND token = ? AND message_id IS NULL",
            (record.job_id, record.bars, record.channel_id, record.token),
        )

    async def posted_in(self, job_id: str, channel_id: int) -> list[LoopRecord]:
        """The loops of ``job_id`` posted in ``channel_id``."""
        rows = await self._db.read(
            "SELECT job_id, bars, channel_id, guild_id, user_id, token, claimed_at, message_id FROM loops "
            "WHERE job_id = ? AND channel_id = ? AND message_id IS NOT NULL",
            (job_id, channel_id),
        )
        return [LoopRecord.model_validate(dict(row)) for row in rows]

    async def forget(self, job_id: str, bars: int, channel_id: int, *, message_id: int) -> None:
        """The loop posted as ``message_id`` is gone from Discord (deleted): it may be made again."""
        await self._db.write(
            "DELETE FROM loops WHERE job_id = ? AND bars = ? AND channel_id = ? AND message_id = ?",
            (job_id, bars, channel_id, message_id),
        )

    async def made_since(self, user_id: int, since: float) -> int:
        """How many loops ``user_id`` asked for since ``since`` (made, or being made)."""
        row = await self._db.read_one(
            "SELECT COUNT(*) FROM loops WHERE user_id = ? AND claimed_at >= ?", (user_id, since)
        )
        return int(row[0]) if row else 0
