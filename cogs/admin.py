"""Admin: ``/musicadmin settings`` for a server's admins, ``/encore ...`` for the bot's owner."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.client import EncoreBot
from bot.discord.replies import discord_text
from bot.errors import BotError, ConfigError, InvalidRequestError, NotAllowedError
from bot.guild_settings import KEYS, GuildSettings, changed, hint, shown
from bot.locales import ENGLISH, localized
from bot.locales import text as say

log = logging.getLogger(__name__)


def _bot(interaction: discord.Interaction[Any]) -> EncoreBot:
    client = interaction.client
    assert isinstance(client, EncoreBot)
    return client


def _can_manage(interaction: discord.Interaction[Any]) -> bool:
    permissions = interaction.permissions
    return bool(permissions.manage_guild or permissions.administrator)


def what(key: str, locale: object = ENGLISH) -> str:
    """What a server setting is, in ``locale`` (``admin.settings.<key>``; its English is ``KEYS``')."""
    return say(locale, f"admin.settings.{key}")


def settings_embed(settings: GuildSettings, locale: object = ENGLISH) -> discord.Embed:
    """The server's settings, for an admin alone: in their ``locale`` (the values are names, as typed)."""
    embed = discord.Embed(title=say(locale, "admin.title"), colour=discord.Colour.dark_teal())
    for key in KEYS:
        embed.add_field(name=f"{key}: {shown(settings, key)}"[:256], value=what(key, locale), inline=False)
    embed.set_footer(text=say(locale, "admin.footer"))
    return embed


def settings_view(guild_id: int, locale: object = ENGLISH) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(SettingSelect(guild_id, locale=locale))
    return view


class SettingModal(discord.ui.Modal):
    def __init__(self, guild_id: int, key: str, current: str, locale: object = ENGLISH) -> None:
        super().__init__(title=say(locale, "admin.change", setting=key)[:45], timeout=900)
        self.guild_id = guild_id
        self.key = key
        self.value: discord.ui.TextInput[Any] = discord.ui.TextInput(
            label=what(key, locale)[:45], default=current[:4000], required=False, max_length=4000
        )
        self.add_item(self.value)

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        bot = _bot(interaction)
        if not _can_manage(interaction):
            raise NotAllowedError.keyed("refusals.manage_server")
        current = await bot.service.guild_settings(self.guild_id)
        new = changed(current, self.key, self.value.value)
        await bot.service.save_guild_settings(self.guild_id, new, by=interaction.user.id)
        log.info("guild %s: %s set to %r by %s", self.guild_id, self.key, shown(new, self.key), interaction.user.id)
        locale = interaction.locale
        note = hint(new, self.key)
        now = say(locale, "admin.now", setting=self.key, value=shown(new, self.key))
        await interaction.response.send_message(
            now + (f" {localized(locale, note)}" if note else ""),
            embed=settings_embed(new, locale),
            view=settings_view(self.guild_id, locale),
            ephemeral=True,
        )

    async def on_error(self, interaction: discord.Interaction[Any], error: Exception) -> None:
        text = (
            discord_text(error, interaction.locale)
            if isinstance(error, BotError)
            else say(interaction.locale, "replies.oops")
        )
        if not isinstance(error, BotError):
            log.error("settings change failed", exc_info=error)
        await interaction.response.send_message(text, ephemeral=True)


class SettingSelect(
    discord.ui.DynamicItem[discord.ui.Select[Any]], template=r"encore:admin:(?P<guild_id>[0-9]{15,21})"
):
    def __init__(self, guild_id: int, *, locale: object = ENGLISH) -> None:
        super().__init__(
            discord.ui.Select(
                custom_id=f"encore:admin:{guild_id}",
                placeholder=say(locale, "admin.pick"),
                options=[discord.SelectOption(label=key, description=what(key, locale)[:100]) for key in KEYS],
            )
        )
        self.guild_id = guild_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> SettingSelect:
        return cls(int(match["guild_id"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        if interaction.guild_id != self.guild_id or not _can_manage(interaction):
            await interaction.response.send_message(say(interaction.locale, "refusals.manage_server"), ephemeral=True)
            return
        key = self.item.values[0]
        bot = _bot(interaction)
        current = await bot.service.guild_settings(self.guild_id)
        shown_value = shown(current, key)
        await interaction.response.send_modal(
            SettingModal(
                self.guild_id, key, "" if shown_value in ("default", "all") else shown_value, interaction.locale
            )
        )


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class MusicAdmin(commands.GroupCog, group_name="musicadmin", group_description="Encore's settings for this server."):
    def __init__(self, bot: EncoreBot) -> None:
        self.bot = bot
        super().__init__()

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(SettingSelect)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(SettingSelect)

    @app_commands.command(name="settings", description="See and change Encore's settings for this server.")
    async def musicadmin_settings(self, interaction: discord.Interaction[Any]) -> None:
        if interaction.guild_id is None or not _can_manage(interaction):
            raise NotAllowedError.keyed("refusals.manage_server")
        current = await self.bot.service.guild_settings(interaction.guild_id)
        locale = interaction.locale
        await interaction.response.send_message(
            embed=settings_embed(current, locale), view=settings_view(interaction.guild_id, locale), ephemeral=True
        )


class OperatorOnly(app_commands.CheckFailure):
    """Not the operator: said in the reader's language (the command tree shows ``user_message``)."""

    def __init__(self, locale: object = ENGLISH) -> None:
        self.user_message = say(locale, "encore.operator_only")
        super().__init__(self.user_message)


@app_commands.default_permissions(administrator=True)  # hidden from members; the owner check still decides
class Owner(commands.GroupCog, group_name="encore", group_description="For Encore's operator."):
    """Commands only the bot's owner (the Discord application's owner) may use.

    Discord offers them only to server admins (and in DMs), so members don't see them at all.
    """

    def __init__(self, bot: EncoreBot) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        if not await self.bot.is_owner(interaction.user):
            raise OperatorOnly(interaction.locale)
        return True

    @app_commands.command(name="pause", description="Stop taking new jobs (jobs in progress finish).")
    async def encore_pause(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)  # stored in the database
        service = self.bot.service
        earlier = service.pause
        pause = await service.pause_jobs(by=interaction.user.id)
        locale = interaction.locale
        if earlier is not None:
            text = say(locale, "encore.already_paused", at=int(pause.at), by=pause.by)
        else:
            log.warning("generation paused by %s", interaction.user.id)
            text = say(locale, "encore.paused")
        await interaction.followup.send(text, ephemeral=True)

    @app_commands.command(name="resume", description="Take new jobs again.")
    async def encore_resume(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        ended = await self.bot.service.resume_jobs()
        if ended is not None:
            log.warning("generation resumed by %s", interaction.user.id)
        text = say(interaction.locale, "encore.resumed" if ended else "encore.not_paused")
        await interaction.followup.send(text, ephemeral=True)

    @app_commands.command(name="reload", description="Read the config again (limits, safety and job rules).")
    async def encore_reload(self, interaction: discord.Interaction[Any]) -> None:
        try:
            fresh = await asyncio.to_thread(self.bot.read_settings)
        except ConfigError as exc:
            raise InvalidRequestError.keyed("encore.not_reloaded", reason=exc.user_message[:1800]) from None
        self.bot.reload_settings(fresh)
        log.warning("config reloaded by %s", interaction.user.id)
        await interaction.response.send_message(say(interaction.locale, "encore.reloaded"), ephemeral=True)
        await self.bot.core.announce_reload(by=interaction.user.id)  # the other processes read theirs again

    @app_commands.command(name="sync", description="Sync Encore's slash commands with Discord.")
    async def encore_sync(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        count = await self.bot.sync_commands()
        await interaction.followup.send(say(interaction.locale, "encore.synced", count=count), ephemeral=True)


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, EncoreBot)
    await bot.add_cog(MusicAdmin(bot))
    await bot.add_cog(Owner(bot))
