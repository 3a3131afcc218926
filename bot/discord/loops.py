"""Posting a loop of a delivered track (``bot.jobs.loops`` makes it): from the **Make it loop** button, and after
the delivery of a track asked for with ``/music generate loop:``.

The file is the loop as made, a WAV that loops as it is, named for what it holds
(``<prompt>-<job id>_loop_120bpm_4bars.wav``, or ``..._loop_8s.wav`` when no steady beat was found) and tagged
like every delivered file. It is never re-encoded: a loop is at most 32 s, which fits any upload limit as WAV.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import discord

from bot.audio.loop import Loop
from bot.discord.replies import discord_text, server_locale
from bot.errors import BotError
from bot.jobs.access import Person
from bot.jobs.loops import LoopClaim, Posted
from bot.jobs.service import JobService
from bot.locales import ENGLISH
from bot.locales import text as say
from bot.naming import audio_filename, loop_filename, loop_tags
from bot.records import Job

log = logging.getLogger(__name__)

#: Posts the loop's text and file; returns the message's id.
Send = Callable[[str, discord.File], Awaitable[int]]


def message_link(posted: Posted) -> str:
    return f"https://discord.com/channels/{posted.guild_id or '@me'}/{posted.channel_id}/{posted.message_id}"


def loop_words(made: Loop, locale: object = ENGLISH) -> str:
    """A loop in words, in ``locale``: what :func:`bot.audio.loop.loop_label` says in English."""
    seconds = f"{made.seconds:.1f}"
    if made.bpm is None:
        return say(locale, "loops.no_beat", seconds=seconds, bars=made.bars)
    key = "loops.one_bar" if made.bars == 1 else "loops.bars"
    return say(locale, key, bars=made.bars, bpm=f"{made.bpm:.1f}", seconds=seconds)


def loop_text(job: Job, made: Loop, locale: object = ENGLISH) -> str:
    """The line the loop's file comes with, in ``locale`` (the server's: everyone there sees it)."""
    key = "loops.posted_tempo" if made.bpm is not None else "loops.posted"
    return say(locale, key, id=job.id, loop=loop_words(made, locale))


async def make_and_send(service: JobService, claim: LoopClaim, send: Send, *, locale: object = ENGLISH) -> Loop:
    """Make the claimed loop and post it with ``send``, its line in ``locale``; the claim is then recorded as
    posted (or given up, if anything failed, so asking again tries again)."""
    made = await service.make_loop(claim, tags=loop_tags(claim.job))
    try:
        data = await asyncio.to_thread(made.path.read_bytes)
        message_id = await send(
            loop_text(claim.job, made, locale),
            discord.File(io.BytesIO(data), loop_filename(Path(audio_filename(claim.job)).stem, made)),
        )
    except BaseException:
        await asyncio.shield(service.release_loop(claim))
        raise
    finally:
        await asyncio.to_thread(made.path.unlink, missing_ok=True)
    await service.loop_posted(claim, message_id)
    return made


async def post_delivered_loops(
    bot: discord.Client, service: JobService, jobs: list[Job], *, delivery_message_id: int | None
) -> None:
    """The loops asked for with the jobs (``loop_bars`` in their request), each posted once in the job's channel
    as a reply to the delivered track. A loop that can't be made is said in one line; delivery stands."""
    for job in jobs:
        bars = job.context.get("loop_bars")
        if not bars or job.channel_id is None:
            continue
        channel = bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        locale = server_locale(bot.get_guild(job.guild_id) if job.guild_id is not None else None)

        send = _reply_in(channel, job, int(bars), delivery_message_id)
        try:
            requester = Person(job.user_id, job.guild_id)  # they asked for it: nothing to check
            claim = await service.claim_loop(
                job.id, requester, bars=int(bars), channel_id=job.channel_id, guild_id=job.guild_id, delivery=True
            )
            if isinstance(claim, Posted):
                continue  # an earlier attempt of this delivery posted it
            await make_and_send(service, claim, send, locale=locale)
        except BotError as exc:
            log.info("job %s: no loop (%s)", job.id, exc)
            try:
                await channel.send(
                    say(locale, "loops.failed", id=job.id, reason=discord_text(exc, locale)),
                    allowed_mentions=discord.AllowedMentions.none(),
                )
            except discord.HTTPException as failed:
                log.warning("job %s: could not say why there is no loop: %s", job.id, failed)
        except discord.HTTPException as exc:
            log.warning("job %s: could not post its loop: %s", job.id, exc)
        except Exception:  # the track is delivered whatever befalls its loop
            log.exception("job %s: making its loop failed", job.id)


def _reply_in(channel: Any, job: Job, bars: int, message_id: int | None) -> Send:
    """Posts in ``channel``, replying to ``message_id``, with a fixed nonce (Discord drops a repeat)."""

    async def send(text: str, file: discord.File) -> int:
        kwargs: dict[str, Any] = {"nonce": f"loop-{job.id}-{bars}"[:25]}
        if message_id is not None:
            kwargs["reference"] = discord.MessageReference(
                message_id=message_id, channel_id=channel.id, guild_id=job.guild_id, fail_if_not_exists=False
            )
        message = await channel.send(text, file=file, allowed_mentions=discord.AllowedMentions.none(), **kwargs)
        return message.id

    return send
