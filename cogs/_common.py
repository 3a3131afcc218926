"""What the Encore cogs share: where a job comes from, posting its card, and taking audio in."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import discord
from yarl import URL

from bot.audio.download import input_url_allowed
from bot.catalog import MUSICGEN
from bot.discord.client import EncoreBot
from bot.discord.delivery import DiscordDelivery
from bot.discord.render import build_card
from bot.errors import BotError, InvalidRequestError, OutputError, TooLargeError
from bot.jobs.access import NOBODY, Person, Standing
from bot.jobs.defaults import Default
from bot.jobs.phase import Phase
from bot.jobs.tickets import ClipSource
from bot.locales import localized
from bot.locales import text as say
from bot.preferences import OUTPUT_FORMAT
from bot.records import Job, JobOrigin, JobRequest
from bot.text import quoted

log = logging.getLogger(__name__)

AUDIO_TYPES = ("audio/", "video/")
MEMBER_LOOKUP_TIMEOUT_S = 2.0  # looking a member up must leave time to answer within 3 s


def origin(interaction: discord.Interaction[Any]) -> JobOrigin:
    roles = interaction.user.roles if isinstance(interaction.user, discord.Member) else []
    return JobOrigin(
        user_id=interaction.user.id,
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        interaction_id=interaction.id,
        token_expires_at=interaction.expires_at.timestamp(),
        role_ids=tuple(role.id for role in roles),
    )


class DiscordActor:
    """The person behind an interaction, as they stand in any server Encore is in (``bot.jobs.access``).

    Their standing in a job's server is read from that server, for them as a member there: discord.py's
    cache, or Discord itself when the member isn't cached, or the whole server isn't (its shard is another
    process's). Someone who isn't a member there stands nowhere.
    """

    def __init__(self, interaction: discord.Interaction[Any]) -> None:
        self._interaction = interaction
        self._known: dict[tuple[int, int | None], Standing] = {}

    @property
    def user_id(self) -> int:
        return self._interaction.user.id

    @property
    def guild_id(self) -> int | None:
        return self._interaction.guild_id

    async def standing(self, guild_id: int, channel_id: int | None) -> Standing:
        key = (guild_id, channel_id)
        if key not in self._known:
            self._known[key] = await self._look_up(guild_id, channel_id)
        return self._known[key]

    async def _look_up(self, guild_id: int, channel_id: int | None) -> Standing:
        guild = self._interaction.client.get_guild(guild_id)
        if guild is None:  # on another process's shard, or Encore isn't there (any more): Discord knows which
            return await self._look_up_elsewhere(guild_id, channel_id)
        user = self._interaction.user
        member = user if isinstance(user, discord.Member) and self.guild_id == guild_id else None
        member = member or guild.get_member(user.id)
        if member is None:
            try:
                async with asyncio.timeout(MEMBER_LOOKUP_TIMEOUT_S):
                    member = await guild.fetch_member(user.id)
            except discord.NotFound:
                return NOBODY  # not a member of the job's server
            except (discord.HTTPException, TimeoutError) as exc:
                raise BotError(key="refusals.lookup_failed", detail=repr(exc)) from None
        channel = guild.get_channel_or_thread(channel_id) if channel_id is not None else None
        return _standing(member, channel)

    async def _look_up_elsewhere(self, guild_id: int, channel_id: int | None) -> Standing:
        """Their standing in a server this process doesn't hold, read from Discord: the server's roles, them
        as a member there, and the channel's overwrites."""
        client = self._interaction.client
        try:
            async with asyncio.timeout(MEMBER_LOOKUP_TIMEOUT_S):
                try:
                    guild = await client.fetch_guild(guild_id, with_counts=False)
                    member = await guild.fetch_member(self._interaction.user.id)
                except (discord.NotFound, discord.Forbidden):
                    return NOBODY  # Encore isn't there (any more), or they aren't a member there
                channel = await _fetch_channel(guild, channel_id)
        except (discord.HTTPException, TimeoutError) as exc:
            raise BotError(key="refusals.lookup_failed", detail=repr(exc)) from None
        return _standing(member, channel)


async def _fetch_channel(guild: discord.Guild, channel_id: int | None) -> discord.abc.GuildChannel | None:
    """A channel of ``guild`` from Discord (a thread's parent, whose overwrites count); None if gone or hidden."""
    try:
        channel = await guild.fetch_channel(channel_id) if channel_id is not None else None
        if isinstance(channel, discord.Thread):
            channel = await guild.fetch_channel(channel.parent_id)
    except (discord.NotFound, discord.Forbidden, discord.InvalidData):
        return None
    return channel if isinstance(channel, discord.abc.GuildChannel) else None


def _standing(member: discord.Member, channel: discord.abc.GuildChannel | discord.Thread | None) -> Standing:
    if channel is None:  # gone: only the server-wide permission can speak for it
        return Standing(moderator=member.guild_permissions.manage_messages)
    permissions = channel.permissions_for(member)
    return Standing(can_view=permissions.view_channel, moderator=permissions.manage_messages)


def card_locale(interaction: discord.Interaction[Any]) -> str:
    """The language of a public card posted through ``interaction``: the server's (``guild_locale``, its
    preferred locale), or in a DM the person's own."""
    return str(interaction.guild_locale or interaction.locale)


def delivery_of(bot: EncoreBot) -> DiscordDelivery:
    assert isinstance(bot.delivery, DiscordDelivery)
    return bot.delivery


async def defer_card(interaction: discord.Interaction[Any]) -> None:
    """Answer now with Discord's public "is thinking…", which the job card replaces.

    Discord drops an interaction not answered within 3 s, and admission waits on the database (under a lock
    shared by everyone's requests), so nothing that can wait comes before this. Input that can be checked
    without waiting is checked first, so a mistake is answered privately at once; a refusal after this point
    is private too (:func:`bot.discord.replies.reply_privately`).
    """
    if not interaction.response.is_done():
        await interaction.response.defer(thinking=True)


async def post_card(bot: EncoreBot, interaction: discord.Interaction[Any], jobs: Sequence[Job]) -> None:
    """Answer with the jobs' card: the first response, or an edit after a defer. No card, no job."""
    service = bot.service
    lead = jobs[0]
    locale = card_locale(interaction)
    embed = build_card(lead, Phase.QUEUED, jobs, locale=locale)
    view = delivery_of(bot).view_factory(lead, Phase.QUEUED, jobs, locale=locale) or discord.ui.View(timeout=None)
    try:
        if interaction.response.is_done():
            message = await interaction.edit_original_response(embed=embed, view=view)
            message_id: int | None = message.id
        else:
            response = await interaction.response.send_message(embed=embed, view=view)
            message_id = response.message_id
    except discord.HTTPException:
        # No card means nobody would see the result: don't spend money on it.
        delivery_of(bot).forget(lead.card_key)
        with contextlib.suppress(BotError):  # it may have failed on its own already
            await service.cancel(lead.id, Person(lead.user_id))
        raise
    if message_id is not None:
        await service.set_card(lead.id, message_id)
    card_job, phase, members = await service.card(lead.id)
    delivery_of(bot).register_interaction(card_job, phase, members, interaction)
    log.info("job %s card posted for user %s (%d job(s))", lead.id, lead.user_id, len(jobs))


async def send_notes(interaction: discord.Interaction[Any], notes: Sequence[str]) -> None:
    """Tell the requester alone how the server narrowed their own defaults (after the card is posted)."""
    if notes:
        locale = interaction.locale
        text = "\n".join(say(locale, "replies.note", note=localized(locale, note)) for note in notes)
        await interaction.followup.send(text, ephemeral=True)


async def melody_jobs(
    bot: EncoreBot,
    interaction: discord.Interaction[Any],
    clip: ClipSource,
    *,
    prompt: str,
    duration_s: int | None,
    params: dict[str, Any],
    notes: list[str],
    seed: int | None = None,
    source_message_id: int | None = None,
) -> list[Job]:
    """MusicGen following ``clip``'s melody, with the person's default length and format where none was given
    (``notes`` gets what the server narrowed)."""
    unset = {Default.LENGTH} if duration_s is None else set()
    if OUTPUT_FORMAT not in params:
        unset.add(Default.FORMAT)
    asked = JobRequest(model=MUSICGEN.key, prompt=prompt, duration_s=duration_s, params=params)
    filled = await bot.service.fill_defaults(asked, origin(interaction), unset)
    notes.extend(filled.notes)
    return await bot.service.follow_melody(
        clip,
        origin(interaction),
        prompt=prompt,
        duration_s=None if filled.request.duration_s is None else int(filled.request.duration_s),
        params=dict(filled.request.params),
        seed=seed,
        source_message_id=source_message_id,
    )


def audio_attachment(message: discord.Message) -> discord.Attachment | None:
    """The first audio (or video, for its sound) attachment of a message."""
    for attachment in message.attachments:
        content_type = (attachment.content_type or "").split(";")[0]
        if content_type.startswith(AUDIO_TYPES):
            return attachment
    return None


def _size(size: int) -> str:
    return f"{size / 1048576:.1f} MiB" if size >= 1048576 else f"{size / 1024:.0f} KiB"


def check_attachment(bot: EncoreBot, attachment: discord.Attachment) -> None:
    """What can be checked of an attachment without downloading it: its type, its stated size, its URL."""
    audio = bot.settings.audio
    limit = audio.max_input_bytes
    content_type = (attachment.content_type or "").split(";")[0]
    if content_type and not content_type.startswith(AUDIO_TYPES):
        raise InvalidRequestError.keyed("refusals.not_audio_file", file=quoted(attachment.filename, 60))
    if attachment.size > limit:
        raise InvalidRequestError.keyed("refusals.file_size", size=_size(attachment.size), limit=_size(limit))
    test_origin = str(audio.test_cdn_origin) if audio.test_cdn_origin is not None else None
    if not input_url_allowed(attachment.url, audio.input_hosts, test_origin=test_origin):
        log.warning("refusing an attachment URL on %s", URL(attachment.url).host)
        raise InvalidRequestError.keyed("refusals.not_on_cdn")


async def save_attachment(bot: EncoreBot, attachment: discord.Attachment) -> Path:
    """Download the attachment now (CDN URLs expire; providers never see them) into the inputs dir.

    Only from Discord's CDN (https, port 443; ``[audio] test_cdn_origin`` in tests), following no redirect,
    and cut off while streaming once it is over ``[audio] max_input_bytes``, whatever it said its size was.
    """
    check_attachment(bot, attachment)
    audio = bot.settings.audio
    suffix = Path(attachment.filename).suffix.lower()[:10] or ".bin"
    path = bot.settings.storage.inputs_dir / f"{secrets.token_hex(8)}{suffix}"
    try:
        await bot.service.download_input(attachment.url, path)
    except TooLargeError:
        raise InvalidRequestError.keyed("refusals.file_over_limit", limit=_size(audio.max_input_bytes)) from None
    except OutputError as exc:
        log.warning("could not download an attachment: %s", exc)
        raise InvalidRequestError.keyed("refusals.download_failed") from None
    return path


async def start_from_attachment(
    bot: EncoreBot,
    interaction: discord.Interaction[Any],
    attachment: discord.Attachment,
    make: Callable[[ClipSource], Awaitable[Sequence[Job]]],
    *,
    keep_file: bool,
) -> None:
    """Hand an attachment to ``make``, which checks the request, then downloads and reads the file; then
    post the jobs' card.

    Refusals that need no download answer privately; the answer is deferred only when the download starts.
    The download is removed if ``make`` fails, and afterwards too unless the job needs the file itself
    (``keep_file``; jobs that prepare their own clip don't).
    """
    check_attachment(bot, attachment)
    saved: list[Path] = []

    async def fetch() -> Path:
        if not interaction.response.is_done():
            await interaction.response.defer(thinking=True)  # downloading and decoding take longer than 3 s
        saved.append(await save_attachment(bot, attachment))
        return saved[-1]

    try:
        jobs = await make(fetch)
    except BaseException:
        for path in saved:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        raise
    if not keep_file:
        for path in saved:
            await asyncio.to_thread(path.unlink, missing_ok=True)
    await post_card(bot, interaction, jobs)
