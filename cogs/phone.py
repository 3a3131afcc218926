"""**Play on phone**: a finished track posted again as a voice message, which Discord's phone apps play inline.

The button sits on a finished single track's card (``encore:phone:<job id>``, so it works after restarts). Who
may use it is the rule every button follows (``bot.jobs.access``, Action.PHONE): the requester anywhere, anyone
else who can see the job's channel from within its server. It starts no job; the voice message goes in the
job's own channel, replying to the track, once per track (``bot.discord.voice``). Everything is answered
privately.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import discord
from discord.ext import commands

from bot.discord.client import EncoreBot
from bot.discord.replies import discord_text, reply_privately
from bot.discord.voice import is_track
from bot.errors import BotError
from bot.jobs.access import Action
from bot.locales import ENGLISH
from bot.locales import text as say
from bot.records import Job
from cogs._common import DiscordActor, delivery_of


def phone_button(job: Job, members: Sequence[Job], locale: object = ENGLISH) -> PhoneButton | None:
    """The button for a finished card of one track (not stems, not a batch of variations)."""
    return PhoneButton(job.id, locale) if len(members) <= 1 and is_track(job) else None


class PhoneButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"encore:phone:(?P<job_id>[a-z0-9]{1,32})"):
    def __init__(self, job_id: str, locale: object = ENGLISH) -> None:
        super().__init__(
            discord.ui.Button(
                label=say(locale, "buttons.phone"),
                emoji="📱",
                style=discord.ButtonStyle.secondary,
                custom_id=f"encore:phone:{job_id}",
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> PhoneButton:
        return cls(match["job_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        client = interaction.client
        assert isinstance(client, EncoreBot)
        try:
            job = await client.service.job_for(self.job_id, DiscordActor(interaction), Action.PHONE)
            voice = delivery_of(client).voice

            async def working() -> None:  # making the file takes a moment: answer Discord within its 3 s
                await interaction.response.defer(ephemeral=True, thinking=True)

            message_id = await voice.post(job, starting=working)
        except BotError as exc:
            await reply_privately(interaction, discord_text(exc, interaction.locale))
            return
        posted = say(interaction.locale, "voice.posted", link=voice.jump_url(job, message_id))
        await interaction.followup.send(posted, ephemeral=True)


class Phone(commands.Cog):
    """Serves the Play on phone buttons of every card, old ones included."""

    def __init__(self, bot: EncoreBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(PhoneButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(PhoneButton)


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, EncoreBot)
    await bot.add_cog(Phone(bot))
