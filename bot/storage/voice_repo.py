"""SQL for ``voice_messages``: the voice message posted of each finished track, claimed before it is posted."""

from __future__ import annotations

from dataclasses import dataclass

from bot.storage.backend import Backend


@dataclass(frozen=True)
class VoiceMessage:
    job_id: str
    claimed_at: float
    channel_id: int | None = None
    message_id: int | None = None  # None: being made and posted (claimed at ``claimed_at``)


class VoiceRepo:
    def __init__(self, db: Backend) -> None:
        self._db = db

    async def get(self, job_id: str) -> VoiceMessage | None:
        row = await self._db.read_one(
            "SELECT job_id, claimed_at, channel_id, message_id FROM voice_messages WHERE job_id = ?", (job_id,)
        )
        return None if row is None else VoiceMessage(str(row[0]), float(row[1]), row[2], row[3])

    async def claim(self, job_id: str, *, now: float, stale_before: float) -> bool:
        """Take the right to post ``job_id``'s voice message: True for the one caller that won it. A claim older
        than ``stale_before`` that never posted (its process died) may be taken again; a posted one never."""
        changed = await self._db.write(
            "INSERT INTO voice_messages (job_id, claimed_at) VALUES (?, ?) "
            "ON CONFLICT (job_id) DO UPDATE SET claimed_at = excluded.claimed_at "
            "WHERE voice_messages.message_id IS NULL AND voice_messages.claimed_at < ?",
            (job_id, now, stale_before),
        )
        return changed > 0

    async def posted(self, job_id: str, *, claimed_at: float, channel_id: int, message_id: int, now: float) -> bool:
        """Record the posted message, if the claim made at ``claimed_at`` still holds."""
        changed = await self._db.write(
            "UPDATE voice_messages SET channel_id = ?, message_id = ?, posted_at = ? "
            "WHERE job_id = ? AND claimed_at = ? AND message_id IS NULL",
            (channel_id, message_id, now, job_id, claimed_at),
        )
        return changed > 0

    async def release(self, job_id: str, *, claimed_at: float) -> None:
        """Give up a claim that posted nothing (the post failed), so the track can be posted later."""
        await self._db.write(
            "DELETE FROM voice_messages WHERE job_id = ? AND claimed_at = ? AND message_id IS NULL",
            (job_id, claimed_at),
        )

    async def forget(self, job_id: str, *, message_id: int) -> None:
        """The voice message ``message_id`` is gone from Discord (deleted): the track may be posted again."""
        await self._db.write("DELETE FROM voice_messages WHERE job_id = ? AND message_id = ?", (job_id, message_id))
