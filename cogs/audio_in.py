"""Audio in: "Continue this track" and "Use as melody" on any message, and replies that mention Encore.

Discord hides other people's attachments from a bot that lacks the privileged Message Content intent,
except in the bot's own messages, messages that mention it, and context-menu targets. So the context
menus work on any message; a reply that mentions Encore works on Encore's own tracks, or when the reply
carries the audio itself, and otherwise points people to the menu.
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.client import EncoreBot
from bot.discord.replies import discord_text, reply_privately, server_locale
from bot.errors import BotError, InvalidRequestError
from bot.jobs.recipes import MAX_EXTEND_S
from bot.jobs.tickets import ClipSource
from bot.locales import text as say
from bot.records import Job, JobOrigin
from bot.text import inert, quoted
from cogs._common import (
    audio_attachment,
    delivery_of,
    melody_jobs,
    origin,
    post_card,
    save_attachment,
    send_notes,
    start_from_attachment,
)
from cogs.views import EXTEND_S

log = logging.getLogger(__name__)

_SECONDS = re.compile(r"(?<![\w.])\+?(\d{1,3})\s*(?:s|sec|secs|seconds)\b", re.IGNORECASE)


def parse_reply(text: str) -> tuple[str, int]:
    """A reply's prompt and how many seconds to add ("+15s" anywhere in it; default 10)."""
    text = re.sub(r"<@!?\d+>", " ", text)
    seconds = EXTEND_S
    match = _SECONDS.search(text)
    if match:
        seconds = int(match.group(1))
        text = text[: match.start()] + text[match.end() :]
    return " ".join(text.split()), seconds


def _seconds(value: str, *, default: int) -> int:
    text = value.strip().removeprefix("+").removesuffix("s").strip()
    if not text:
        return default
    if not text.isdigit():
        raise InvalidRequestError.keyed("refusals.seconds_whole", value=quoted(value, 20))
    return int(text)


class _AudioModal(discord.ui.Modal):
    """Asks for a prompt (and a length) before taking a message's audio."""

    def __init__(self, cog: AudioIn, message: discord.Message, *, locale: object, continuing: bool) -> None:
        def words(key: str, **params: Any) -> str:
            return say(locale, f"dialogs.{key}", **params)

        super().__init__(title=words("continue_title" if continuing else "melody_title"), timeout=600)
        self.cog = cog
        self.message = message
        self.continuing = continuing
        self.prompt: discord.ui.TextInput[Any] = discord.ui.TextInput(
            label=words("prompt_optional" if continuing else "prompt"),
            placeholder=words("continue_example" if continuing else "melody_example"),
            required=not continuing,
            max_length=500,
        )
        self.seconds: discord.ui.TextInput[Any] = discord.ui.TextInput(
            label=words("seconds_to_add", max=MAX_EXTEND_S) if continuing else words("length"),
            default=str(EXTEND_S) if continuing else None,
            placeholder=None if continuing else words("length_placeholder"),
            required=False,
            max_length=3,
        )
        self.add_item(self.prompt)
        self.add_item(self.seconds)

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        if self.continuing:
            seconds: int | None = _seconds(self.seconds.value, default=EXTEND_S)
        else:  # empty: the person's default length (else the model's)
            seconds = _seconds(self.seconds.value, default=8) if self.seconds.value.strip() else None
        await self.cog.take_audio(interaction, self.message, self.prompt.value, seconds, continuing=self.continuing)

    async def on_error(self, interaction: discord.Interaction[Any], error: Exception) -> None:
        message = (
            discord_text(error, interaction.locale)
            if isinstance(error, BotError)
            else say(interaction.locale, "replies.oops")
        )
        if not isinstance(error, BotError):
            log.error("audio modal failed", exc_info=error)
        await reply_privately(interaction, message)  # after the download's public defer too


class AudioIn(commands.Cog):
    def __init__(self, bot: EncoreBot) -> None:
        self.bot = bot
        self._menus = [
            app_commands.ContextMenu(name="Continue this track", callback=self.continue_menu),
            app_commands.ContextMenu(name="Use as melody", callback=self.melody_menu),
            app_commands.ContextMenu(name="Split stems", callback=self.stems_menu),
        ]
        for menu in self._menus:
            menu.allowed_contexts = app_commands.AppCommandContext(guild=True, dm_channel=True)
            menu.allowed_installs = app_commands.AppInstallationType(guild=True)

    async def cog_load(self) -> None:
        for menu in self._menus:
            self.bot.tree.add_command(menu)

    async def cog_unload(self) -> None:
        for menu in self._menus:
            self.bot.tree.remove_command(menu.name, type=menu.type)

    # -- context menus ------------------------------------------------------------------------

    async def continue_menu(self, interaction: discord.Interaction[Any], message: discord.Message) -> None:
        if await self._encore_track(message) is None:  # a card of Encore's has no audio, but its job does
            self._require_audio(message)
        await interaction.response.send_modal(_AudioModal(self, message, locale=interaction.locale, continuing=True))

    async def melody_menu(self, interaction: discord.Interaction[Any], message: discord.Message) -> None:
        self._require_audio(message)
        await interaction.response.send_modal(_AudioModal(self, message, locale=interaction.locale, continuing=False))

    async def stems_menu(self, interaction: discord.Interaction[Any], message: discord.Message) -> None:
        attachment = self._require_audio(message)

        async def split(clip: ClipSource) -> list[Job]:
            job = await self.bot.service.split_stems(
                clip, origin(interaction), name=attachment.filename, source_message_id=message.id
            )
            return [job]

        await start_from_attachment(self.bot, interaction, attachment, split, keep_file=True)

    @staticmethod
    def _require_audio(message: discord.Message) -> discord.Attachment:
        attachment = audio_attachment(message)
        if attachment is None:
            raise InvalidRequestError.keyed("refusals.no_audio_attached")
        return attachment

    async def _encore_track(self, message: discord.Message) -> Job | None:
        """The job behind one of Encore's own messages (a delivered track, or its card): what continuing it
        continues. None for anyone else's message."""
        me = self.bot.user
        if me is None or message.author.id != me.id:
            return None
        attachment = audio_attachment(message)
        return await self.bot.service.track_of_message(
            message.id, channel_id=message.channel.id, filename=attachment.filename if attachment else None
        )

    async def take_audio(
        self,
        interaction: discord.Interaction[Any],
        message: discord.Message,
        prompt: str,
        seconds: int | None,
        *,
        continuing: bool,
    ) -> None:
        """Continue a message's track by ``seconds``, or follow its melody for ``seconds`` (None: the person's
        default length, else the model's)."""
        # One of Encore's own tracks is continued as the next part of its job, from the whole track we keep.
        parent = await self._encore_track(message) if continuing else None
        kept = await self.bot.service.kept_track(parent) if parent is not None else None
        attachment = self._require_audio(message) if kept is None else None

        notes: list[str] = []

        # The service checks everything but the clip before it is downloaded, so mistakes get a private reply.
        async def make(clip: ClipSource) -> list[Job]:
            if continuing:
                job = await self.bot.service.continue_track(
                    clip,
                    origin(interaction),
                    prompt=prompt or None,
                    extra_s=EXTEND_S if seconds is None else seconds,
                    parent=parent,
                    source_message_id=message.id,
                )
                return [job]
            return await melody_jobs(
                self.bot,
                interaction,
                clip,
                prompt=prompt,
                duration_s=seconds,
                params={},
                notes=notes,
                source_message_id=message.id,
            )

        if attachment is None:
            assert kept is not None
            track = kept

            async def ours() -> Path:  # nothing to download, but reading it may take longer than 3 s
                if not interaction.response.is_done():
                    await interaction.response.defer(thinking=True)
                return track

            await post_card(self.bot, interaction, await make(ours))
            return
        # A continuation stitches onto the original, so it keeps the file; a melody keeps its prepared clip.
        await start_from_attachment(self.bot, interaction, attachment, make, keep_file=continuing)
        await send_notes(interaction, notes)

    # -- replies that mention Encore ------------------------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        me = self.bot.user
        if message.author.bot or me is None or me not in message.mentions or message.reference is None:
            return
        source = await self._referenced(message)
        attachment = audio_attachment(message)
        # Replying to one of Encore's own tracks (or its card) continues that job; audio in the reply is new.
        parent = None
        if attachment is None and source is not None:
            attachment = audio_attachment(source)
            if source.channel.id == message.channel.id:
                parent = await self._encore_track(source)
        if attachment is None and parent is None:
            hidden = source is not None and source.author.id != me.id and not source.attachments
            refusal = "refusals.hidden_audio" if hidden else "refusals.no_audio_attached"
            await self._reply(message, say(server_locale(message.guild), refusal))
            return
        prompt, seconds = parse_reply(message.content)
        guild_id = message.guild.id if message.guild else None
        try:
            await self.bot.service.check_text([("prompt", prompt)], guild_id)  # before the card shows it
        except BotError as exc:
            await self._reply(message, discord_text(exc, server_locale(message.guild)))
            return
        locale = server_locale(message.guild)
        title = inert(prompt) if prompt else say(locale, "dialogs.continuing")
        preparing = say(locale, "dialogs.preparing")
        card = await self._reply(message, embed=discord.Embed(title=title[:256], description=preparing))
        if card is None:
            return
        job_origin = JobOrigin(
            user_id=message.author.id,
            guild_id=guild_id,
            channel_id=message.channel.id,
            card_message_id=card.id,
        )
        downloaded: Path | None = None

        async def fetch() -> Path:  # called once every check that needs no download has passed
            nonlocal downloaded
            if attachment is None:
                raise InvalidRequestError.keyed("refusals.no_audio_attached")
            downloaded = await save_attachment(self.bot, attachment)
            return downloaded

        try:
            kept = await self.bot.service.kept_track(parent) if parent is not None else None
            job = await self.bot.service.continue_track(
                kept or fetch,
                job_origin,
                prompt=prompt or None,
                extra_s=seconds,
                parent=parent,
                source_message_id=(source or message).id,
            )
        except BotError as exc:
            if downloaded is not None:
                await asyncio.to_thread(downloaded.unlink, missing_ok=True)
            await card.edit(content=discord_text(exc, server_locale(message.guild)), embed=None)
            return
        card_job, phase, members = await self.bot.service.card(job.id)
        delivery_of(self.bot).register_interaction(card_job, phase, members, None)

    async def _referenced(self, message: discord.Message) -> discord.Message | None:
        reference = message.reference
        if reference is None:
            return None
        if isinstance(reference.resolved, discord.Message):
            return reference.resolved
        if reference.message_id is None:
            return None
        try:
            return await message.channel.fetch_message(reference.message_id)
        except discord.HTTPException:
            return None

    async def _reply(
        self, message: discord.Message, content: str | None = None, *, embed: discord.Embed | None = None
    ) -> discord.Message | None:
        kwargs: dict[str, Any] = {"mention_author": False, "allowed_mentions": discord.AllowedMentions.none()}
        if embed is not None:
            kwargs["embed"] = embed
        try:
            return await message.reply(content, **kwargs)
        except discord.HTTPException as exc:
            log.warning("could not reply in channel %s: %s", message.channel.id, exc)
            return None


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, EncoreBot)
    await bot.add_cog(AudioIn(bot))
