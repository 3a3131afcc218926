"""``/music``: one slash-command group, its commands in two mixins: making music (``cogs.music_make``) and a
person's own music and settings (``cogs.music_yours``). The cog only translates interactions into core calls.

Options, choices, help and autocomplete come from the catalog (``bot.catalog``); nothing here knows a
model's parameters beyond the few common ones that get a slash option of their own.
"""

from __future__ import annotations

from discord import app_commands
from discord.ext import commands

from bot.discord.client import EncoreBot
from bot.discord.delivery import DiscordDelivery
from cogs._common import delivery_of
from cogs.music_make import MakeCommands
from cogs.music_yours import YoursCommands
from cogs.variations import card_view_with_variations
from cogs.views import CancelButton, HistoryButton, ResultButton


@app_commands.allowed_contexts(guilds=True, dms=True, private_channels=False)
@app_commands.allowed_installs(guilds=True, users=False)
class Music(
    YoursCommands,  # (discord.py collects the bases' commands last base first: make, then yours, as before the split)
    MakeCommands,
    commands.GroupCog,
    group_name="music",
    group_description="Make music from words and sounds.",
):
    def __init__(self, bot: EncoreBot) -> None:
        self.bot = bot
        super().__init__()

    @property
    def delivery(self) -> DiscordDelivery:
        return delivery_of(self.bot)

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(CancelButton, ResultButton, HistoryButton)
        self.delivery.view_factory = card_view_with_variations

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(CancelButton, ResultButton, HistoryButton)


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, EncoreBot)
    await bot.add_cog(Music(bot))
