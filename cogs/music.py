"""``/music``: generate and cancel. The cog only translates interactions into calls on the core."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import EncoreBot
from bot.catalog import MUSICGEN, SEED_MAX
from bot.delivery import DiscordDelivery, build_card
from bot.errors import BotError
from bot.jobs.models import JobOrigin, JobRequest
from bot.jobs.service import Phase, phase_of
from cogs.views import CancelButton, card_view, is_moderator

log = logging.getLogger(__name__)

_MODEL_VERSIONS = [
    app_commands.Choice(name=choice.label, value=choice.value) for choice in MUSICGEN.choices["model_version"]
]


def _origin(interaction: discord.Interaction[Any]) -> JobOrigin:
    return JobOrigin(
        user_id=interaction.user.id,
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        interaction_id=interaction.id,
        token_expires_at=interaction.expires_at.timestamp(),
    )


@app_commands.allowed_contexts(guilds=True, dms=True, private_channels=False)
@app_commands.allowed_installs(guilds=True, users=False)
class Music(commands.GroupCog, group_name="music", group_description="Make music from words."):
    def __init__(self, bot: EncoreBot) -> None:
        self.bot = bot
        super().__init__()

    @property
    def delivery(self) -> DiscordDelivery:
        assert isinstance(self.bot.delivery, DiscordDelivery)
        return self.bot.delivery

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(CancelButton)
        self.delivery.view_factory = card_view

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(CancelButton)

    @app_commands.command(name="generate", description="Turn a description into music.")
    @app_commands.describe(
        prompt="Describe the music: genre, mood, instruments, tempo…",
        duration="Length in seconds (default 8)",
        model_version="Which MusicGen model to use",
        seed="Same seed + same prompt = a similar track; leave empty for a surprise",
    )
    @app_commands.choices(model_version=_MODEL_VERSIONS)
    async def music_generate(
        self,
        interaction: discord.Interaction[Any],
        prompt: app_commands.Range[str, 1, 1000],
        duration: app_commands.Range[int, 1, 300] | None = None,
        model_version: app_commands.Choice[str] | None = None,
        seed: app_commands.Range[int, 1, SEED_MAX] | None = None,
    ) -> None:
        params = {"model_version": model_version.value} if model_version else {}
        request = JobRequest(model=MUSICGEN.key, prompt=prompt, duration_s=duration, params=params, seed=seed)
        # Validation errors raise BotError here, before anything is stored or submitted.
        job = await self.bot.service.create(request, _origin(interaction))
        try:
            response = await interaction.response.send_message(
                embed=build_card(job, Phase.QUEUED), view=card_view(job, Phase.QUEUED)
            )
        except discord.HTTPException:
            # No card means nobody would see the result: don't spend money on it.
            self.delivery.forget(job.id)
            with contextlib.suppress(BotError):  # it may have failed on its own already
                await self.bot.service.cancel(job.id, user_id=job.user_id)
            raise
        if response.message_id is not None:
            await self.bot.service.set_card(job.id, response.message_id)
        job = await self.bot.service.get(job.id)
        self.delivery.register_interaction(job, interaction)
        log.info("job %s card posted for user %s", job.id, job.user_id)

    @app_commands.command(name="cancel", description="Cancel one of your jobs (your latest if none is given).")
    @app_commands.describe(job="The job id (shown on the card)")
    async def music_cancel(self, interaction: discord.Interaction[Any], job: str | None = None) -> None:
        service = self.bot.service
        if job is None:
            active = await service.repo.list_for_user(interaction.user.id, active_only=True, limit=1)
            if not active:
                await interaction.response.send_message("You have no jobs in progress.", ephemeral=True)
                return
            job = active[0].id
        canceled = await service.cancel(
            job.strip().lower(), user_id=interaction.user.id, moderator=is_moderator(interaction)
        )
        await interaction.response.send_message(
            f"Canceled job `{canceled.id}` ({phase_of(canceled.status).value.lower()}).", ephemeral=True
        )

    @music_cancel.autocomplete("job")
    async def _cancel_job_autocomplete(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        jobs = await self.bot.service.repo.list_for_user(interaction.user.id, active_only=True, limit=25)
        choices = []
        for job in jobs:
            label = f"{job.id} · {job.prompt}"
            if current.lower() in label.lower():
                choices.append(app_commands.Choice(name=label[:100], value=job.id))
        return choices


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, EncoreBot)
    await bot.add_cog(Music(bot))
