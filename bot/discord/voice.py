"""Voice messages of finished tracks: Discord's phone apps play them inline, where they only offer audio files
as a download.

A voice message is a channel message flagged IS_VOICE_MESSAGE (``1 << 13``) with one audio file and nothing
else, whose attachment gives ``duration_secs`` and a base64 ``waveform`` (Discord's docs, resources/message:
"Voice Messages" and the attachment request structure; the official OpenAPI spec's ``MessageCreateRequest``).
discord.py 2.7 can't send one, so the request is built here to the spec and sent through discord.py's own HTTP
client (a :class:`discord.http.Route`, so its authentication and rate-limit handling apply): the multipart
body any file goes in, ``payload_json`` and ``files[0]``. It goes in the job's own channel, replying to the
track's message, without pinging anyone. Interaction responses can't carry one (Discord drops a voice
message's fields there). The file is made by :func:`bot.audio.voice.voice_clip`, one track at a time, off the
event loop.

A track gets one voice message at most: a row of ``voice_messages`` is claimed (a conditional write) before its
file is made, so a double click, the server setting and a click at once, or another process lose the claim and
post nothing; the post carries a fixed nonce, so Discord drops a repeat of it too. A voice message deleted
since may be posted again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import av.error
import discord
from discord.http import Route

from bot.audio import off_loop
from bot.audio.voice import VoiceClip, voice_clip
from bot.config import Settings
from bot.discord.explicit import Showing, showing
from bot.discord.send import upload_limit
from bot.errors import BotError, DeliveryError, InvalidRequestError, JobStateError
from bot.guild_settings import GuildSettings
from bot.naming import track_tags
from bot.records import Job, JobStatus
from bot.storage.voice_repo import VoiceRepo

log = logging.getLogger(__name__)

IS_VOICE_MESSAGE = discord.MessageFlags(voice=True).value  # 1 << 13
FILENAME = "voice-message.ogg"  # what Discord's own clients call theirs
CLAIM_STALE_S = 600.0  # a claim this old that posted nothing was left by a process that died: take it again


def voice_nonce(job: Job) -> str:
    """A fixed nonce per track: Discord drops a repeat of the same post (enforce_nonce)."""
    return f"voice-{job.id}"[:25]


def is_track(job: Job) -> bool:
    """A finished job with one track (not stems) can be a voice message."""
    return (
        job.status in (JobStatus.SUCCEEDED, JobStatus.DELIVERED)
        and bool(job.output_path)
        and not job.result.get("files")
    )


class VoiceMessages:
    """Posts finished tracks as voice messages: on request (Play on phone), or after each delivery in servers
    that ask for it (``voice_messages``)."""

    def __init__(
        self,
        bot: discord.Client,
        repo: VoiceRepo | None,
        settings: Settings,
        rules: Callable[[int | None], Awaitable[GuildSettings]],
    ) -> None:
        self._bot = bot
        self._repo = repo
        self._settings = settings
        self._rules = rules  # a server's own settings
        self._work_dir = settings.storage.dir / "deliveries"
        self._encoding = asyncio.Semaphore(1)  # one track made into a voice message at a time
        self._tasks: set[asyncio.Task[None]] = set()

    # -- on request ---------------------------------------------------------------------------------

    async def post(
        self, job: Job, *, reply_to: int | None = None, starting: Callable[[], Awaitable[None]] | None = None
    ) -> int:
        """Post ``job``'s track as a voice message in its channel, replying to ``reply_to`` (default: the track's
        message); returns the message's id. ``starting`` is awaited once the post is claimed, before the slow
        part (to defer an interaction).

        BotError, with what to tell the person, if it isn't a track, is posted already or being posted, its file
        is no longer kept, it is too long, or Discord refuses it.
        """
        if self._repo is None or job.channel_id is None:
            raise BotError.keyed("refusals.voice_unavailable")
        if not is_track(job):
            raise JobStateError.keyed("refusals.voice_unfinished")
        where = {"channel_id": job.channel_id, "guild_id": job.guild_id}
        if await showing(self._bot, self._rules, job, **where) is not Showing.NORMAL:
            raise InvalidRequestError.keyed("refusals.voice_explicit")
        await self._check_not_posted(job)
        source = Path(str(job.output_path))
        if not await asyncio.to_thread(source.is_file):
            raise self._gone()
        claimed_at = time.time()
        if not await self._repo.claim(job.id, now=claimed_at, stale_before=claimed_at - CLAIM_STALE_S):
            raise JobStateError.keyed("refusals.voice_posting")
        try:
            if starting is not None:
                await starting()
            clip = await self._make(job, source)
            try:
                message_id = await self._send(job, clip, reply_to or job.delivery_message_id)
            finally:
                await asyncio.to_thread(clip.path.unlink, missing_ok=True)
        except (BotError, discord.HTTPException):
            await self._repo.release(job.id, claimed_at=claimed_at)  # nothing was posted: it may be tried again
            raise
        await self._repo.posted(
            job.id, claimed_at=claimed_at, channel_id=job.channel_id, message_id=message_id, now=time.time()
        )
        log.info("job %s: posted as voice message %s", job.id, message_id)
        return message_id

    async def message_of(self, job: Job) -> int | None:
        """The voice message posted of ``job``'s track, if any (to delete it with the track)."""
        record = None if self._repo is None else await self._repo.get(job.id)
        return None if record is None else record.message_id

    def jump_url(self, job: Job, message_id: int) -> str:
        assert job.channel_id is not None
        channel = self._bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        return channel.get_partial_message(message_id).jump_url

    async def _check_not_posted(self, job: Job) -> None:
        """Raise if ``job``'s voice message is on Discord already; forget one that was deleted since."""
        assert self._repo is not None
        assert job.channel_id is not None
        record = await self._repo.get(job.id)
        if record is None or record.message_id is None:
            return
        channel = self._bot.get_partial_messageable(record.channel_id or job.channel_id, guild_id=job.guild_id)
        try:
            await channel.fetch_message(record.message_id)
        except discord.NotFound:
            await self._repo.forget(job.id, message_id=record.message_id)
            return
        except discord.HTTPException as exc:  # can't look (no history, Discord's trouble): it was posted
            log.info("job %s: can't see its voice message %s: %s", job.id, record.message_id, exc.status)
        link = self.jump_url(job, record.message_id)
        raise JobStateError.keyed("refusals.voice_posted", link=link)

    def _gone(self) -> JobStateError:
        days = self._settings.storage.keep_files_days
        if days > 0:
            return JobStateError.keyed("refusals.voice_gone_days", days=f"{days:g}")
        return JobStateError.keyed("refusals.voice_gone")

    async def _make(self, job: Job, source: Path) -> VoiceClip:
        dest = self._work_dir / job.id / FILENAME
        async with self._encoding:
            try:
                return await off_loop(
                    "voice",
                    voice_clip,
                    source,
                    dest,
                    max_s=self._settings.discord.voice_message_max_s,
                    max_bytes=upload_limit(self._bot, job.guild_id),
                    tags=track_tags(job),
                )
            except FileNotFoundError:
                raise self._gone() from None
            except (av.error.FFmpegError, ValueError, IndexError) as exc:
                await asyncio.to_thread(dest.unlink, missing_ok=True)
                raise DeliveryError(key="refusals.voice_failed", detail=str(exc)) from None

    async def _send(self, job: Job, clip: VoiceClip, reply_to: int | None) -> int:
        """The voice message, as Discord's create-message endpoint takes one (see the module's docstring)."""
        assert job.channel_id is not None
        payload: dict[str, Any] = {
            "flags": IS_VOICE_MESSAGE,
            "attachments": [
                {
                    "id": 0,
                    "filename": FILENAME,
                    "duration_secs": round(clip.duration_s, 3),
                    "waveform": base64.b64encode(clip.waveform).decode("ascii"),
                }
            ],
            "allowed_mentions": {"parse": [], "replied_user": False},
            "nonce": voice_nonce(job),
            "enforce_nonce": True,
        }
        if reply_to is not None:
            reference: dict[str, Any] = {"type": 0, "message_id": str(reply_to), "channel_id": str(job.channel_id)}
            if job.guild_id is not None:
                reference["guild_id"] = str(job.guild_id)
            payload["message_reference"] = {**reference, "fail_if_not_exists": False}
        data = await asyncio.to_thread(clip.path.read_bytes)
        file = discord.File(io.BytesIO(data), filename=FILENAME)
        form = [
            {"name": "payload_json", "value": json.dumps(payload)},
            {"name": "files[0]", "value": file.fp, "filename": FILENAME, "content_type": "application/octet-stream"},
        ]
        route = Route("POST", "/channels/{channel_id}/messages", channel_id=job.channel_id)
        try:
            message = await self._bot.http.request(route, form=form, files=[file])
        except discord.Forbidden as exc:
            raise DeliveryError(key="refusals.voice_forbidden", detail=f"forbidden: {exc.code}") from None
        except discord.NotFound as exc:
            raise DeliveryError(key="refusals.voice_channel_gone", detail=f"{exc.code}") from None
        except discord.HTTPException as exc:
            raise DeliveryError(
                key="refusals.voice_refused", detail=f"Discord HTTP {exc.status} ({exc.code}): {exc.text}"[:500]
            ) from None
        return int(message["id"])

    # -- after each delivery, where a server asks for it ------------------------------------------------

    def after_delivery(self, jobs: Sequence[Job], message_id: int | None) -> None:
        """``jobs`` were delivered as ``message_id``: post each track as a voice message too, replying to it,
        if their server's ``voice_messages`` setting is on (in the background: the delivery is done)."""
        lead = jobs[0]
        if lead.guild_id is None or self._repo is None or not any(is_track(job) for job in jobs):
            return
        task = asyncio.create_task(self._post_all(jobs, message_id), name=f"voice:{lead.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post_all(self, jobs: Sequence[Job], message_id: int | None) -> None:
        try:
            if not (await self._rules(jobs[0].guild_id)).voice_messages:
                return
            for job in jobs:
                if is_track(job):
                    with contextlib.suppress(JobStateError):  # posted already (or being posted), or gone
                        await self.post(job, reply_to=message_id)
        except BotError as exc:  # too long (the setting's limit), or Discord refused it (a permission)
            level = logging.INFO if isinstance(exc, InvalidRequestError) else logging.WARNING
            log.log(level, "job %s: no voice message: %s (%s)", jobs[0].id, exc.user_message, exc)
        except Exception:
            log.exception("job %s: posting its voice message crashed", jobs[0].id)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
