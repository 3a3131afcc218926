"""``/music`` commands about a person's own music and settings: prefer, usage, help, models, cancel, show
and history (a mixin of the ``Music`` cog, ``cogs.music``)."""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands

from bot.catalog import MAX_BATCH, MODELS, get_model
from bot.discord.client import EncoreBot
from bot.discord.render import build_card, phase_text
from bot.jobs.access import Action
from bot.jobs.phase import phase_of
from bot.locales import localized
from bot.locales import text as say
from bot.preferences import FORMATS, Preferences, describe, narrowed_here
from cogs._common import DiscordActor, card_locale
from cogs.music_options import MODEL_CHOICES, CommandsMixin, defaults_text, in_locale
from cogs.variations import card_view_with_variations
from cogs.views import history_page

log = logging.getLogger(__name__)


class YoursCommands(CommandsMixin):
    """prefer, usage, help, models, cancel, show, history."""

    bot: EncoreBot

    @app_commands.command(name="prefer", description="Your own defaults: model, length, format and variations.")
    @app_commands.describe(
        model="The model /music generate uses when you name none",
        length="Length in seconds when you give none (generate, melody, song)",
        format="The kind of file, where the model makes it (generate, melody, song)",
        variations=f"How many variations at once when you give no count (1-{MAX_BATCH}; generate, blend)",
        clear="Forget your defaults first (then keep any given here)",
    )
    @app_commands.choices(model=MODEL_CHOICES, format=[app_commands.Choice(name=f, value=f) for f in FORMATS])
    async def music_prefer(
        self,
        interaction: discord.Interaction[Any],
        model: app_commands.Choice[str] | None = None,
        length: app_commands.Range[int, 1, 600] | None = None,
        format: app_commands.Choice[str] | None = None,
        variations: app_commands.Range[int, 1, MAX_BATCH] | None = None,
        clear: bool = False,
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)  # they live in the database
        service, user_id = self.bot.service, interaction.user.id
        given = {
            "model": model.value if model else None,
            "duration_s": length,
            "format": format.value if format else None,
            "count": variations,
        }
        changes = {name: value for name, value in given.items() if value is not None}
        prefs = Preferences() if clear else await service.preferences(user_id)
        if clear or changes:
            prefs = await service.save_preferences(user_id, prefs.model_copy(update=changes))
            log.info("user %s set preferences %s (cleared first: %s)", user_id, changes, clear)
        notes = narrowed_here(prefs, await service.guild_settings(interaction.guild_id), self.bot.settings)
        locale = interaction.locale
        if clear and prefs.empty:
            title = say(locale, "prefer.cleared")
        else:
            title = say(locale, "prefer.saved") if clear or changes else say(locale, "prefer.title")
        embed = discord.Embed(title=title, colour=discord.Colour.blurple())
        for what, value in describe(prefs, locale):
            embed.add_field(name=what, value=value, inline=True)
        if notes:
            here = "\n".join(f"• {localized(locale, note)}" for note in notes)[:1024]
            embed.add_field(name=say(locale, "prefer.on_this_server"), value=here, inline=False)
        embed.set_footer(text=say(locale, "prefer.footer"))
        await interaction.followup.send(embed=embed, ephemeral=True)

    @app_commands.command(name="usage", description="How much music you have left today.")
    async def music_usage(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)  # the day's totals come from the database
        limits = self.bot.settings.limits
        service = self.bot.service
        usage = await service.usage(interaction.user.id, interaction.guild_id)
        locale = interaction.locale

        def of(used: float, limit: float, unit: str = "") -> str:
            if limit:
                return say(locale, "usage.of", used=f"{used:g}{unit}", limit=f"{limit:g}{unit}")
            return say(locale, "usage.no_limit", used=f"{used:g}{unit}")

        def name(key: str) -> str:
            return say(locale, f"usage.{key}")

        embed = discord.Embed(title=name("title"), colour=discord.Colour.blurple())
        if service.paused:
            embed.description = name("paused")
        embed.add_field(name=name("tracks"), value=of(usage.user_jobs, limits.user_daily_jobs), inline=True)
        embed.add_field(
            name=name("seconds"), value=of(round(usage.user_audio_s), limits.user_daily_audio_s, " s"), inline=True
        )
        in_flight = of(usage.user_in_flight, limits.user_jobs_in_flight)
        embed.add_field(name=name("in_progress"), value=in_flight, inline=True)
        prefs = await service.preferences(interaction.user.id)
        narrowed = narrowed_here(prefs, await service.guild_settings(interaction.guild_id), self.bot.settings)
        mine = defaults_text(prefs, locale) + "".join(f"\n• {localized(locale, note)}" for note in narrowed)
        embed.add_field(name=name("defaults"), value=mine[:1024], inline=False)
        permissions = interaction.permissions
        if interaction.guild_id is not None and (permissions.manage_guild or permissions.administrator):
            embed.add_field(name=name("server_tracks"), value=of(usage.guild_jobs, limits.guild_daily_jobs))
            embed.add_field(
                name=name("server_seconds"),
                value=of(round(usage.guild_audio_s), limits.guild_daily_audio_s, " s"),
                inline=True,
            )
            spent = f"${usage.guild_cost_usd:.2f}"
            if limits.guild_daily_budget_usd:
                spent = say(locale, "usage.of", used=spent, limit=f"${limits.guild_daily_budget_usd:.2f}")
            embed.add_field(name=name("server_budget"), value=spent, inline=True)
        embed.set_footer(text=name("footer"))
        await interaction.followup.send(embed=embed, ephemeral=True)

    @app_commands.command(name="help", description="A short guide to Encore.")
    async def music_help(self, interaction: discord.Interaction[Any]) -> None:
        locale = interaction.locale
        embed = discord.Embed(title=say(locale, "help.title"), colour=discord.Colour.blurple())
        embed.description = say(locale, "help.body")
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @app_commands.command(name="models", description="What each model can do, and every setting it takes.")
    @app_commands.describe(model="Show only this model")
    @app_commands.choices(model=[app_commands.Choice(name=s.display_name, value=s.key) for s in MODELS.values()])
    async def music_models(
        self, interaction: discord.Interaction[Any], model: app_commands.Choice[str] | None = None
    ) -> None:
        specs = [get_model(model.value)] if model else list(MODELS.values())
        settings, locale = self.bot.settings, interaction.locale
        translate = in_locale(locale)
        embeds = []
        for spec in specs:
            help_text = spec.help_text(settings, host=self.bot.registry.host(spec, settings), translate=translate)
            embed = discord.Embed(title=spec.display_name, description=help_text[:4096])
            embed.set_footer(text=say(locale, "models.footer"))
            embeds.append(embed)
        await interaction.response.send_message(embeds=embeds, ephemeral=True)

    @app_commands.command(name="cancel", description="Cancel one of your jobs (your latest if none is given).")
    @app_commands.describe(job="The job id (shown on the card)")
    async def music_cancel(self, interaction: discord.Interaction[Any], job: str | None = None) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)  # a database write, then the provider
        service = self.bot.service
        if job is None:
            active = await service.jobs_of(interaction.user.id, active_only=True, limit=1)
            if not active:
                await interaction.followup.send(say(interaction.locale, "replies.no_jobs"), ephemeral=True)
                return
            job = active[0].id
        canceled = await service.cancel(job.strip().lower(), DiscordActor(interaction))
        phase = phase_text(phase_of(canceled.status), interaction.locale).lower()
        text = say(interaction.locale, "replies.canceled", id=canceled.id, phase=phase)
        await interaction.followup.send(text, ephemeral=True)

    @app_commands.command(name="show", description="Post a job's card again, with working buttons.")
    @app_commands.describe(job="The job id (from the card or /music history)")
    async def music_show(self, interaction: discord.Interaction[Any], job: str) -> None:
        job_id = job.strip().lower()
        await self.bot.service.job_for(job_id, DiscordActor(interaction), Action.SHOW)
        card_job, phase, members = await self.bot.service.card(job_id)
        locale = card_locale(interaction)
        await interaction.response.send_message(
            embed=build_card(card_job, phase, members, locale=locale),
            view=card_view_with_variations(card_job, phase, members, locale=locale),
        )

    @app_commands.command(name="history", description="Your recent tracks.")
    @app_commands.describe(page="Which page (1 is the newest)")
    async def music_history(
        self, interaction: discord.Interaction[Any], page: app_commands.Range[int, 1, 10000] = 1
    ) -> None:
        embed, view = await history_page(self.bot, interaction.user.id, page - 1, locale=interaction.locale)
        await interaction.response.send_message(embed=embed, view=view, ephemeral=True)

    # -- autocomplete ---------------------------------------------------------------------------

    @music_cancel.autocomplete("job")
    async def _cancel_job_autocomplete(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        jobs = await self.bot.service.jobs_of(interaction.user.id, active_only=True, limit=25)
        choices = []
        for job in jobs:
            label = f"{job.id} · {job.prompt}"
            if current.lower() in label.lower():
                choices.append(app_commands.Choice(name=label[:100], value=job.id))
        return choices

    @music_show.autocomplete("job")
    async def _show_job_autocomplete(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        jobs = await self.bot.service.jobs_of(interaction.user.id, limit=25)
        return [
            app_commands.Choice(name=f"{job.id} · {job.prompt}"[:100], value=job.id)
            for job in jobs
            if current.lower() in f"{job.id} {job.prompt}".lower()
        ]
