"""Persistent buttons on job cards. Custom ids carry the job id, so they work after restarts."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import discord

from bot.app import EncoreBot
from bot.catalog import MODELS, Capability
from bot.delivery import TERMINAL_PHASES
from bot.errors import BotError, JobStateError, NotAllowedError
from bot.jobs.models import Job
from bot.jobs.service import JobService, Phase
from cogs._common import origin, post_card

EXTEND_S = 10


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
    """The buttons a card shows in each phase: Cancel while it runs, the result actions once done."""
    view = discord.ui.View(timeout=None)
    if phase not in TERMINAL_PHASES and phase != Phase.UPLOADING:
        view.add_item(CancelButton(job.id))
    elif phase == Phase.DONE:
        single = len(members) <= 1
        spec = MODELS.get(job.model)
        actions = ["regen"]
        if single:
            actions.append("vary")
            if spec is not None and Capability.CONTINUATION in spec.capabilities:
                actions.append("extend")
        actions += ["info", "delete"]
        for action in actions:
            view.add_item(ResultButton(action, job.id))
    return view


# -- result cards -----------------------------------------------------------------------------------

RESULT_ACTIONS = {
    "regen": ("Regenerate", "🔁"),
    "vary": ("Variations", "🎲"),
    "extend": (f"Extend +{EXTEND_S}s", "⏩"),
    "info": ("Info", "📋"),
    "delete": ("Delete", "🗑️"),
}
VARIATIONS = 3


class ResultButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"encore:(?P<action>regen|vary|extend|info|delete):(?P<job_id>[a-z0-9]{1,32})",
):
    """A finished card's actions. The custom id carries the job; everything else is read from SQLite."""

    def __init__(self, action: str, job_id: str) -> None:
        label, emoji = RESULT_ACTIONS[action]
        style = discord.ButtonStyle.danger if action == "delete" else discord.ButtonStyle.secondary
        super().__init__(
            discord.ui.Button(label=label, emoji=emoji, style=style, custom_id=f"encore:{action}:{job_id}")
        )
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ResultButton:
        return cls(match["action"], match["job_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        try:
            await _ACTIONS[self.action](interaction, self.job_id)
        except BotError as exc:
            if interaction.response.is_done():
                await interaction.followup.send(exc.user_message, ephemeral=True)
            else:
                await interaction.response.send_message(exc.user_message, ephemeral=True)


async def _regenerate(interaction: discord.Interaction[Any], job_id: str, count: int = 1) -> None:
    bot = _bot(interaction)
    jobs = await bot.service.regenerate(job_id, origin(interaction), count=count)
    await post_card(bot, interaction, jobs)


async def _vary(interaction: discord.Interaction[Any], job_id: str) -> None:
    await _regenerate(interaction, job_id, count=VARIATIONS)


async def _extend(interaction: discord.Interaction[Any], job_id: str) -> None:
    bot = _bot(interaction)
    job = await bot.service.get(job_id)
    if not job.output_path:
        raise JobStateError("That track isn't finished, so there is nothing to extend yet.")
    await interaction.response.defer(thinking=True)
    new = await bot.service.continue_track(
        Path(job.output_path),
        origin(interaction),
        extra_s=EXTEND_S,
        parent=job,
        model_version=job.input.get("model_version"),
    )
    await post_card(bot, interaction, [new])


async def _info(interaction: discord.Interaction[Any], job_id: str) -> None:
    job = await _bot(interaction).service.get(job_id)
    await interaction.response.send_message(embed=info_embed(job), ephemeral=True)


async def _delete(interaction: discord.Interaction[Any], job_id: str) -> None:
    bot = _bot(interaction)
    job = await bot.service.get(job_id)
    if job.user_id != interaction.user.id and not is_moderator(interaction):
        raise NotAllowedError("Only the person who asked for this track (or a moderator) can delete it.")
    await interaction.response.defer(ephemeral=True, thinking=True)
    if job.channel_id is not None:
        channel = bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        for message_id in {job.delivery_message_id, job.card_message_id} - {None}:
            assert message_id is not None
            with contextlib.suppress(discord.NotFound):
                await channel.get_partial_message(message_id).delete()
    await interaction.followup.send("Deleted.", ephemeral=True)


_ACTIONS = {"regen": _regenerate, "vary": _vary, "extend": _extend, "info": _info, "delete": _delete}


def _bot(interaction: discord.Interaction[Any]) -> EncoreBot:
    client = interaction.client
    assert isinstance(client, EncoreBot)
    return client


def info_embed(job: Job) -> discord.Embed:
    """Every parameter, the seed, timings and cost of a job (shown privately)."""
    spec = MODELS.get(job.model)
    embed = discord.Embed(title=f"Job {job.id}", description=job.prompt[:4000] or None)
    embed.add_field(name="Model", value=f"{spec.display_name if spec else job.model} (`{job.model_ref}`)", inline=False)
    settings = {k: v for k, v in job.input.items() if k not in ("prompt", "prompt_a", "input_audio")}
    if "input_audio" in job.input:
        settings["input_audio"] = "(your clip)"
    lines = [f"`{key}` = {value}" for key, value in sorted(settings.items())]
    embed.add_field(name="Settings", value="\n".join(lines)[:1024] or "defaults", inline=False)
    if job.seed is not None:
        embed.add_field(name="Seed", value=str(job.seed), inline=True)
    embed.add_field(name="Status", value=job.status.value, inline=True)
    timings = []
    if job.running_at and job.submitted_at:
        timings.append(f"waited {max(0.0, job.running_at - job.submitted_at):.1f} s")
    if job.predict_time_s is not None:
        timings.append(f"generated in {job.predict_time_s:.1f} s")
    if job.finished_at:
        timings.append(f"{job.finished_at - job.created_at:.1f} s in all")
    if timings:
        embed.add_field(name="Timings", value=", ".join(timings), inline=False)
    if spec is not None and job.duration_s is not None:
        estimate = spec.cost_per_run_usd + spec.cost_per_output_s_usd * job.duration_s
        embed.add_field(name="Cost (estimate)", value=f"about ${estimate:.3f}", inline=True)
    if job.part > 1:
        embed.add_field(name="Lineage", value=f"part {job.part}, continuing `{job.context.get('parent') or 'a clip'}`")
    return embed
