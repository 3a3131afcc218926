"""Persistent buttons on job cards. Custom ids carry the job id, so they work after restarts."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import discord

from bot.app import EncoreBot
from bot.delivery import TERMINAL_PHASES
from bot.errors import BotError
from bot.jobs.models import Job
from bot.jobs.service import JobService, Phase


def service_of(interaction: discord.Interaction[Any]) -> JobService:
    client = interaction.client
    assert isinstance(client, EncoreBot)
    return client.service


def is_moderator(interaction: discord.Interaction[Any]) -> bool:
    """Manage Messages in the channel makes a member a moderator for Encore's purposes."""
    permissions = interaction.permissions
    return bool(permissions.manage_messages or permissions.administrator)


class CancelButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"encore:cancel:(?P<job_id>[a-z0-9]{1,32})"
):
    def __init__(self, job_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Cancel",
                style=discord.ButtonStyle.secondary,
                emoji="🛑",
                custom_id=f"encore:cancel:{job_id}",
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> CancelButton:
        return cls(match["job_id"])

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        job = await service_of(interaction).repo.get(self.job_id)
        if job is None:
            await interaction.response.send_message("I can't find that job any more.", ephemeral=True)
            return False
        if job.user_id != interaction.user.id and not is_moderator(interaction):
            await interaction.response.send_message(
                "Only the person who asked for this track (or a moderator) can cancel it.", ephemeral=True
            )
            return False
        return True

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        # Acknowledge at once; the card update follows from the job service.
        await interaction.response.defer()
        try:
            await service_of(interaction).cancel(
                self.job_id, user_id=interaction.user.id, moderator=is_moderator(interaction)
            )
        except BotError as exc:
            await interaction.followup.send(exc.user_message, ephemeral=True)


def card_view(job: Job, phase: Phase, members: Sequence[Job] = ()) -> discord.ui.View:
    """The buttons a card shows in each phase (an empty view clears them)."""
    view = discord.ui.View(timeout=None)
    if phase not in TERMINAL_PHASES and phase != Phase.UPLOADING:
        view.add_item(CancelButton(job.id))
    return view
