"""**Make it loop**: a button on delivered tracks that posts a seamless loop of the track.

The custom id carries the job (``encore:loop:<job id>``), so the button works after restarts. The loop is as
long as the track was asked to loop with ``/music generate loop:``, else :data:`bot.audio.loop.DEFAULT_BARS`
bars; the core (``bot.jobs.loops``) says who may, makes each loop once, and makes it off the event loop.
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any

import discord
from discord.ext import commands

from bot.audio.loop import DEFAULT_BARS
from bot.discord.client import EncoreBot
from bot.discord.loops import make_and_send, message_link
from bot.discord.replies import discord_text, reply_privately
from bot.errors import BotError
from bot.jobs.loops import Posted
from bot.locales import ENGLISH
from bot.locales import text as say
from cogs._common import DiscordActor, card_locale

log = logging.getLogger(__name__)


class LoopButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"encore:loop:(?P<job_id>[a-z0-9]{1,32})"):
    def __init__(self, job_id: str, locale: object = ENGLISH) -> None:
        super().__init__(
            discord.ui.Button(
                label=say(locale, "buttons.loop"),
                emoji="🔂",
                style=discord.ButtonStyle.secondary,
                custom_id=f"encore:loop:{job_id}",
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> LoopButton:
        return cls(match["job_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        try:
            await make_it_loop(interaction, self.job_id)
        except BotError as exc:
            await reply_privately(interaction, discord_text(exc, interaction.locale))
        except Exception:
            reference = secrets.token_hex(4)
            log.exception("Make it loop failed on %s (ref %s)", self.job_id, reference)
            await reply_privately(interaction, say(interaction.locale, "replies.apology", reference=reference))


async def make_it_loop(interaction: discord.Interaction[Any], job_id: str) -> None:
    bot = interaction.client
    assert isinstance(bot, EncoreBot)
    if interaction.channel_id is None:
        raise BotError.keyed("refusals.loop_where")
    service, actor = bot.service, DiscordActor(interaction)
    job = await service.get(job_id)
    bars = int(job.context.get("loop_bars") or DEFAULT_BARS)
    claim = await service.claim_loop(
        job_id, actor, bars=bars, channel_id=interaction.channel_id, guild_id=interaction.guild_id
    )
    if isinstance(claim, Posted) and not await _still_there(bot, claim):
        await service.forget_loop(claim)  # deleted since: make it again
        claim = await service.claim_loop(
            job_id, actor, bars=bars, channel_id=interaction.channel_id, guild_id=interaction.guild_id
        )
    if isinstance(claim, Posted):
        here = say(interaction.locale, "loops.already_here", link=message_link(claim))
        await interaction.response.send_message(here, ephemeral=True)
        return
    await interaction.response.defer(thinking=True)

    async def send(text: str, file: discord.File) -> int:
        message = await interaction.followup.send(
            text, file=file, wait=True, allowed_mentions=discord.AllowedMentions.none()
        )
        return message.id

    await make_and_send(
        service, claim, send, locale=card_locale(interaction)
    )  # a claim that fails is given up, so asking again tries again


async def _still_there(bot: EncoreBot, posted: Posted) -> bool:
    """Whether the loop's message is still on Discord (if Discord can't say, it is taken to be)."""
    channel = bot.get_partial_messageable(posted.channel_id, guild_id=posted.guild_id)
    try:
        await channel.fetch_message(posted.message_id)
    except discord.NotFound:
        return False
    except discord.HTTPException as exc:
        log.info("can't see loop message %s: %s", posted.message_id, exc.status)
    return True


class Loops(commands.Cog):
    def __init__(self, bot: EncoreBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(LoopButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(LoopButton)


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, EncoreBot)
    await bot.add_cog(Loops(bot))
