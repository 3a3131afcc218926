"""Make it loop: a seamless loop of a delivered track (``bot.audio.loop``), made here, on this machine.

A loop is not a job. It calls no provider, costs nothing, and is made in a fraction of a second from the
track Encore already keeps, so it takes no turn, quota or budget of the gate (``bot.jobs.gate``) and is stored
as no job; what it shares with jobs is checked here, in the same terms:

- **who**: ``bot.jobs.access`` rules on the track's job, as the person stands in the job's own server
  (``Action.LOOP``, like Full track: the requester anywhere; anyone who can see the job's channel, from within
  its server);
- **what**: a finished track (not stems) whose audio is still kept (``[storage] keep_files_days``);
- **how often**: each loop of a track (its length, in one channel) is made once: a second click, a double
  click included, is shown where it was posted. A person makes one loop at a time and at most
  ``[limits] user_loops_per_hour``, and the work runs in the bounded threads people's files are decoded in
  (``[audio] decode_threads``), reading at most a minute of the track (and never past ``[audio] max_input_s``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bot.audio import AudioPool
from bot.audio.loop import BAR_CHOICES, Loop, make_loop
from bot.config import Settings
from bot.errors import BotError, InvalidRequestError, JobStateError
from bot.jobs.access import Action, Actor, authorize
from bot.jobs.limits import LimitError
from bot.records import Job, JobStatus
from bot.storage.loops_repo import LoopRecord, LoopsRepo

log = logging.getLogger(__name__)

#: A claim not posted after this long was abandoned (the bot stopped while making it): it may be taken again.
ABANDONED_S = 300.0
_HOUR_S = 3600.0


class LoopBusyError(JobStateError):
    default_key = "refusals.loop_in_making"


@dataclass(frozen=True)
class Posted:
    """The loop was made before: where it is."""

    job_id: str
    bars: int
    guild_id: int | None
    channel_id: int
    message_id: int

    @classmethod
    def of(cls, record: LoopRecord) -> Posted:
        assert record.message_id is not None
        return cls(record.job_id, record.bars, record.guild_id, record.channel_id, record.message_id)


@dataclass(frozen=True)
class LoopClaim:
    """The making of one loop, held by whoever asked first."""

    job: Job
    record: LoopRecord
    source: Path
    one_at_a_time: bool = True  # the person's one loop in the making (not the job's own delivery)

    @property
    def bars(self) -> int:
        return self.record.bars


def check_bars(bars: int) -> int:
    if bars not in BAR_CHOICES:
        raise InvalidRequestError.keyed("refusals.loop_bars", choices=", ".join(map(str, BAR_CHOICES)), bars=bars)
    return bars


class Loops:
    def __init__(
        self,
        repo: LoopsRepo | None,
        pool: AudioPool,
        settings: Callable[[], Settings],
        clock: Callable[[], float],
    ) -> None:
        self._repo = repo
        self._pool = pool
        self._settings = settings
        self._clock = clock
        self._making: set[int | None] = set()  # people with a loop in the making

    @property
    def work_dir(self) -> Path:
        return self._settings().storage.dir / "loops"

    async def claim(
        self, job: Job, actor: Actor, *, bars: int, channel_id: int, guild_id: int | None, checked: bool = False
    ) -> LoopClaim | Posted:
        """Take the making of ``bars`` bars of ``job`` for posting in ``channel_id``, or say where it was posted.

        Refused (a BotError with a private, clear line) when ``actor`` may not, the track isn't there, it is
        being made, or they made too many; nothing is held then. ``checked``: ``actor`` is the job's own
        delivery (the ``loop`` option), so the rights and the hourly limit don't apply."""
        repo = self._available()
        check_bars(bars)
        if not checked:
            await authorize(job, actor, Action.LOOP)
        source = await self._track(job)
        earlier = await repo.get(job.id, bars, channel_id)
        if earlier is not None and earlier.message_id is not None:
            return Posted.of(earlier)
        now = self._clock()
        if earlier is not None and earlier.claimed_at >= now - ABANDONED_S:
            raise LoopBusyError()
        if not checked:
            await self._check_rate(actor.user_id, now)
        record = LoopRecord(
            job_id=job.id,
            bars=bars,
            channel_id=channel_id,
            guild_id=guild_id,
            user_id=actor.user_id,
            token=secrets.token_hex(8),
            claimed_at=now,
            message_id=None,
        )
        if not await repo.claim(record, abandoned_before=now - ABANDONED_S):
            again = await repo.get(job.id, bars, channel_id)
            if again is not None and again.message_id is not None:
                return Posted.of(again)
            raise LoopBusyError()
        return LoopClaim(job=job, record=record, source=source, one_at_a_time=not checked)

    async def make(self, claim: LoopClaim, *, tags: Mapping[str, str]) -> Loop:
        """Make the claimed loop (in the audio threads, one at a time per person). On failure the claim is
        given up, so asking again tries again."""
        person = claim.record.user_id if claim.one_at_a_time else None
        if person in self._making:
            await self.release(claim)
            raise LoopBusyError.keyed("refusals.loop_busy")
        if person is not None:
            self._making.add(person)
        dest = self.work_dir / f"{claim.job.id}-{claim.bars}-{claim.record.token}.wav"
        try:
            return await self._pool.run(
                "loop",
                make_loop,
                claim.source,
                dest,
                bars=claim.bars,
                max_s=self._settings().audio.max_input_s,
                tags=tags,
            )
        except BaseException:
            await asyncio.shield(self.release(claim))
            raise
        finally:
            self._making.discard(person)

    async def posted(self, claim: LoopClaim, message_id: int) -> None:
        """The loop is in Discord as ``message_id``: later clicks are shown it."""
        if not await self._available().posted(claim.record, message_id):
            log.warning("loop of %s (%d bars) posted, but its claim had been taken over", claim.job.id, claim.bars)

    async def release(self, claim: LoopClaim) -> None:
        """Give the claim up (the loop could not be made or posted)."""
        try:
            await self._available().release(claim.record)
        except BotError as exc:  # it lapses by itself after ABANDONED_S
            log.warning("could not give up the loop claim on %s: %s", claim.job.id, exc)

    async def posted_in(self, job: Job, channel_id: int) -> list[Posted]:
        """The loops of ``job`` posted in ``channel_id`` (Delete takes them with the track)."""
        if self._repo is None:
            return []
        return [Posted.of(record) for record in await self._repo.posted_in(job.id, channel_id)]

    async def forget(self, posted: Posted) -> None:
        """``posted`` is gone from Discord (deleted): asking again makes it again."""
        await self._available().forget(posted.job_id, posted.bars, posted.channel_id, message_id=posted.message_id)

    def _available(self) -> LoopsRepo:
        if self._repo is None:
            raise BotError.keyed("refusals.loops_unavailable")
        return self._repo

    @staticmethod
    async def _track(job: Job) -> Path:
        if job.result.get("files"):
            raise JobStateError.keyed("refusals.loop_stems")
        if job.status not in (JobStatus.SUCCEEDED, JobStatus.DELIVERED) or not job.output_path:
            raise JobStateError.keyed("refusals.unfinished_loop")
        path = Path(job.output_path)
        if not await asyncio.to_thread(path.is_file):
            raise JobStateError.keyed("refusals.loop_not_kept")
        return path

    async def _check_rate(self, user_id: int, now: float) -> None:
        limit = self._settings().limits.user_loops_per_hour
        if limit and await self._available().made_since(user_id, now - _HOUR_S) >= limit:
            raise LimitError.keyed("limits.loops_per_hour" if limit != 1 else "limits.loop_per_hour", limit=limit)
