"""Sending a finished job's audio to Discord.

Each file is fitted under the destination's upload limit (re-encoded or split), ten to a message. While the
card's interaction token lives the audio goes as a followup through it; after that as a channel message
replying to the card and mentioning the requester, with a fixed nonce so a retry after a crash cannot post it
twice. A retry first looks for what an earlier attempt posted and never heard back about.

Everything here is REST by channel id, so any process can deliver any job: one whose server is on another
process's shard (not in this one's cache) too. Only the server's upload limit then comes from Discord.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import av.error
import discord

from bot.audio import off_loop
from bot.audio.fit import fit_audio
from bot.discord.cards import Cards, find_message, token_dead
from bot.discord.explicit import REFUSED, Rules, Showing, showing
from bot.discord.render import delivery_text
from bot.errors import BotError, DeliveryError
from bot.locales import text
from bot.naming import audio_filename, image_filename, output_files, track_tags, waveform_filename
from bot.records import Job

log = logging.getLogger(__name__)

DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
MAX_FILES = 10  # attachments per message
GUILD_LOOKUP_TIMEOUT_S = 10.0
GUILD_LIMIT_TTL_S = 600.0  # a server's boost level, which sets its upload limit, changes rarely
GUILD_LIMITS_KEPT = 10_000


def upload_limit(bot: discord.Client, guild_id: int | None) -> int:
    """The largest file the bot may post in ``guild_id`` (its boost tier's limit), or in a DM."""
    guild = bot.get_guild(guild_id) if guild_id else None
    return guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT


def delivery_nonce(job: Job) -> str:
    """A fixed nonce per job: Discord drops a repeat of the same send (enforce_nonce)."""
    return f"encore-{job.id}"[:25]


async def fit_files(jobs: Sequence[Job], *, limit: int, work_dir: Path) -> tuple[list[discord.File], bool]:
    """Every file to post for ``jobs``, each fitted under ``limit`` (re-encoded or split if needed)."""
    files: list[discord.File] = []
    reencoded = False
    for job in jobs:
        for name, source in output_files(job):
            files_out, changed = await _fit_one(job, source, name, limit=limit, work_dir=work_dir)
            files.extend(files_out)
            reencoded = reencoded or changed
    return files, reencoded


async def _fit_one(job: Job, source: Path, name: str, *, limit: int, work_dir: Path) -> tuple[list[discord.File], bool]:
    """One file of a job (its audio, or one stem), fitted under ``limit``: one or more files to post."""
    stem = Path(audio_filename(job)).stem + (f"-{name}" if name else "")
    try:
        fitted = await off_loop(
            "fit", fit_audio, source, work_dir / job.id, stem=stem, limit_bytes=limit, tags=track_tags(job)
        )
    except FileNotFoundError:
        raise DeliveryError("The finished file went missing before it could be posted.", retryable=False) from None
    except (av.error.FFmpegError, ValueError, IndexError) as exc:
        raise DeliveryError("I couldn't prepare the audio for Discord.", detail=str(exc), retryable=False) from None
    files = []
    for item in fitted:
        data = await asyncio.to_thread(item.path.read_bytes)
        files.append(discord.File(io.BytesIO(data), filename=item.path.name))
    return files, any(item.reencoded for item in fitted)


class UploadLimits:
    """A server's upload limit (its boost level): from this process's cache, or for a server on another
    process's shard from Discord (``GET /guilds/{id}``), remembered for a while. DMs: 10 MiB."""

    def __init__(self, bot: discord.Client, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._bot = bot
        self._clock = clock
        self._fetched: dict[int, tuple[int, float]] = {}  # guild id -> (limit, until)

    async def of(self, guild_id: int | None) -> int:
        if guild_id is None:
            return DEFAULT_UPLOAD_LIMIT
        guild = self._bot.get_guild(guild_id)
        if guild is not None:
            return guild.filesize_limit
        now = self._clock()
        known = self._fetched.get(guild_id)
        if known is not None and known[1] > now:
            return known[0]
        try:
            async with asyncio.timeout(GUILD_LOOKUP_TIMEOUT_S):
                fetched = await self._bot.fetch_guild(guild_id, with_counts=False)
        except (discord.HTTPException, TimeoutError) as exc:
            log.warning("server %s: can't read its upload limit (%s); assuming the smallest", guild_id, exc)
            return DEFAULT_UPLOAD_LIMIT
        if len(self._fetched) >= GUILD_LIMITS_KEPT:
            self._fetched.clear()
        self._fetched[guild_id] = (fetched.filesize_limit, now + GUILD_LIMIT_TTL_S)
        return fetched.filesize_limit


class Sender:
    """Posts finished jobs' audio, through the card's interaction while it lives, else in its channel."""

    def __init__(self, bot: discord.Client, cards: Cards, work_dir: Path, rules: Rules) -> None:
        self._bot = bot
        self._cards = cards
        self._work_dir = work_dir
        self._rules = rules  # a server's own settings (explicit_songs)
        self._limits = UploadLimits(bot)

    async def _upload_limit(self, job: Job, interaction: discord.Interaction[Any] | None) -> int:
        if interaction is not None:
            return interaction.filesize_limit
        return await self._limits.of(job.guild_id)

    async def files_for(self, jobs: Sequence[Job], *, limit: int) -> list[discord.File]:
        """The files of finished jobs, each fitted under ``limit`` (for re-posting, e.g. a full track)."""
        files, _ = await fit_files(jobs, limit=limit, work_dir=self._work_dir)
        return files

    async def deliver(self, jobs: Sequence[Job]) -> int | None:
        lead = jobs[0]
        if self._cards.posted_earlier(lead) or self._cards.unstored(lead):
            await self._cards.recover_card(lead)  # to reply to it
        if lead.delivery_attempts > 0 and (posted := await self._earlier_delivery(lead)) is not None:
            log.info("job %s: an earlier attempt posted it as message %s", lead.id, posted)
            return posted
        show = await self._showing(lead)
        if show is Showing.REFUSED:
            raise DeliveryError(REFUSED, detail="explicit song, channel not age-restricted", retryable=False)
        interaction = self._cards.live_interaction(lead.card_key)
        limit = await self._upload_limit(lead, interaction)
        files, reencoded = await fit_files(jobs, limit=limit, work_dir=self._work_dir)
        locale = self._cards.locale_of(lead)
        content = delivery_text(jobs, files=len(files), refit_limit=limit if reencoded else None, locale=locale)
        if show is Showing.SPOILER:
            for file in files:
                file.spoiler = True  # sent as SPOILER_<name>: Discord hides it until it is clicked
            content += "\n" + text(locale, "delivery.explicit_spoiler")
        # Ping the requester only: not roles or everyone, and not the card's author (the bot itself).
        mentions = discord.AllowedMentions(
            everyone=False, roles=False, users=[discord.Object(lead.user_id)], replied_user=False
        )
        # Discord takes 10 attachments per message: the first message carries the text, the rest follow.
        first, rest = files[:MAX_FILES], [files[i : i + MAX_FILES] for i in range(MAX_FILES, len(files), MAX_FILES)]
        message_id = await self._send(lead, interaction, content, first, mentions)
        for index, chunk in enumerate(rest, start=2):
            live = self._cards.live_interaction(lead.card_key)
            await self._send(lead, live, f"(part {index})", chunk, mentions, index)
        return message_id

    async def _showing(self, lead: Job) -> Showing:
        """How the song may be shown in its channel (``bot.discord.explicit``); a failed look is retried."""
        try:
            return await showing(self._bot, self._rules, lead, channel_id=lead.channel_id, guild_id=lead.guild_id)
        except BotError as exc:
            raise DeliveryError(detail=f"age restriction unknown: {exc}") from None

    async def _earlier_delivery(self, lead: Job) -> int | None:
        """A message an earlier attempt posted with the lead job's audio, whose answer never came back.

        Discord drops a repeated channel message with the same nonce, but not a repeated interaction followup.
        """
        me = self._bot.user
        own = (waveform_filename(lead), image_filename(lead))

        def is_delivery(message: discord.Message) -> bool:
            names = [a.filename for a in message.attachments if a.filename not in own]
            return me is not None and message.author.id == me.id and any(lead.id in name for name in names)

        return await find_message(self._bot, lead, self._cards.card_id(lead) or lead.interaction_id, is_delivery)

    async def _send(
        self,
        lead: Job,
        interaction: discord.Interaction[Any] | None,
        content: str,
        files: list[discord.File],
        mentions: discord.AllowedMentions,
        chunk: int = 1,
    ) -> int:
        try:
            if interaction is not None:
                try:
                    message = await interaction.followup.send(
                        content, files=files, allowed_mentions=mentions, wait=True
                    )
                    return message.id
                except discord.HTTPException as exc:
                    if not token_dead(exc):
                        raise
                    log.info("job %s: interaction token expired early; posting in the channel", lead.id)
                    self._cards.token_died(lead.card_key)
                    for file in files:
                        file.reset()
            if lead.channel_id is None:
                raise DeliveryError(detail="job has no channel", retryable=False)
            channel = self._bot.get_partial_messageable(lead.channel_id, guild_id=lead.guild_id)
            nonce = delivery_nonce(lead) if chunk == 1 else f"{delivery_nonce(lead)[:22]}-{chunk}"
            kwargs: dict[str, Any] = {"files": files, "allowed_mentions": mentions, "nonce": nonce}
            card_id = self._cards.card_id(lead)
            if card_id is not None:
                kwargs["reference"] = discord.MessageReference(
                    message_id=card_id,
                    channel_id=lead.channel_id,
                    guild_id=lead.guild_id,
                    fail_if_not_exists=False,
                )
            message = await channel.send(content, **kwargs)
            return message.id
        except discord.Forbidden as exc:
            raise DeliveryError(
                "I don't have permission to post files in that channel. "
                "A server admin needs to give me Send Messages and Attach Files there.",
                detail=f"forbidden: {exc.code}",
                retryable=False,
            ) from None
        except discord.HTTPException as exc:
            if exc.status == 413 or exc.code == 40005:
                raise DeliveryError("The audio is too large to post here.", detail="413", retryable=False) from None
            if exc.status == 404 and exc.code in (10003, 10062):
                raise DeliveryError(
                    "The channel for this job no longer exists.", detail=f"{exc.code}", retryable=False
                ) from None
            raise DeliveryError(detail=f"Discord HTTP {exc.status} ({exc.code})") from None
