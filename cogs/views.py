"""Persistent buttons on job cards. Custom ids carry the job id, so they work after restarts."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import discord

from bot.catalog import MODELS, Capability
from bot.config import LimitsSettings
from bot.discord.client import EncoreBot
from bot.discord.replies import discord_text, reply_privately
from bot.errors import BotError, JobStateError
from bot.jobs.access import Action
from bot.jobs.limits import cost_is_actual
from bot.jobs.phase import TERMINAL_PHASES, Phase
from bot.jobs.service import JobService
from bot.locales import ENGLISH
from bot.locales import text as say
from bot.providers.plugins import Registry
from bot.records import Job
from bot.text import inert
from cogs._common import DiscordActor, card_locale, defer_card, delivery_of, origin, post_card
from cogs.loops import LoopButton
from cogs.lyrics import lyrics_button
from cogs.phone import phone_button
from cogs.plans import post_plan

EXTEND_S = 10


def service_of(interaction: discord.Interaction[Any]) -> JobService:
    client = interaction.client
    assert isinstance(client, EncoreBot)
    return client.service


class CancelButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"encore:cancel:(?P<job_id>[a-z0-9]{1,32})"
):
    def __init__(self, job_id: str, locale: object = ENGLISH) -> None:
        super().__init__(
            discord.ui.Button(
                label=say(locale, "buttons.cancel"),
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

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        actor = DiscordActor(interaction)
        try:
            await service_of(interaction).job_for(self.job_id, actor, Action.CANCEL)
        except BotError as exc:
            await interaction.response.send_message(discord_text(exc, interaction.locale), ephemeral=True)
            return
        # Acknowledge at once; the card update follows from the job service.
        await interaction.response.defer()
        try:
            await service_of(interaction).cancel(self.job_id, actor)
        except BotError as exc:
            await interaction.followup.send(discord_text(exc, interaction.locale), ephemeral=True)


def card_view(job: Job, phase: Phase, members: Sequence[Job] = (), *, locale: object = ENGLISH) -> discord.ui.View:
    """The buttons a card shows in each phase: Cancel while it runs, the result actions once done; labelled in
    ``locale`` (the server's, like the card)."""
    view = discord.ui.View(timeout=None)
    if phase not in TERMINAL_PHASES and phase != Phase.UPLOADING:
        view.add_item(CancelButton(job.id, locale))
    elif phase == Phase.FAILED and len(members) <= 1:
        view.add_item(ResultButton("retry", job.id, locale))
    elif phase == Phase.DONE:
        single = len(members) <= 1
        spec = MODELS.get(job.model)
        if spec is not None and Capability.STEMS in spec.capabilities:
            for action in ("info", "delete"):
                view.add_item(ResultButton(action, job.id, locale))
            return view
        actions = ["regen"]
        if single:
            actions.append("vary")
            if spec is not None and Capability.CONTINUATION in spec.capabilities:
                actions.append("extend")
        actions += ["info", "delete"]
        if single and spec is not None and Capability.CONTINUATION in spec.capabilities:
            actions.append("full")
        if single:
            actions.append("stems")
        if single and spec is not None and Capability.VOCALS in spec.capabilities and job.result.get("plan"):
            actions.append("plan")
        for action in actions:
            view.add_item(ResultButton(action, job.id, locale))
        if (phone := phone_button(job, members, locale)) is not None:
            view.add_item(phone)
        if single:
            view.add_item(LoopButton(job.id, locale))
        if (lyrics := lyrics_button(job, members, locale)) is not None:
            view.add_item(lyrics)
    return view


# -- result cards -----------------------------------------------------------------------------------

# Each action's emoji; its label is the catalogue's ``buttons.<action>``.
RESULT_ACTIONS = {
    "regen": "🔁",
    "vary": "🎲",
    "extend": "⏩",
    "info": "📋",
    "delete": "🗑️",
    "full": "🎼",
    "retry": "🔄",
    "stems": "🎚️",
    "plan": "📝",
}
VARIATIONS = 3


class ResultButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"encore:(?P<action>regen|vary|extend|info|delete|full|retry|stems|plan):(?P<job_id>[a-z0-9]{1,32})",
):
    """A finished card's actions. The custom id carries the job; everything else is read from SQLite."""

    def __init__(self, action: str, job_id: str, locale: object = ENGLISH) -> None:
        label, emoji = say(locale, f"buttons.{action}", seconds=EXTEND_S), RESULT_ACTIONS[action]
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
            await reply_privately(interaction, discord_text(exc, interaction.locale))


async def _regenerate(interaction: discord.Interaction[Any], job_id: str, count: int = 1) -> None:
    bot = _bot(interaction)
    await defer_card(interaction)
    jobs = await bot.service.regenerate(job_id, origin(interaction), DiscordActor(interaction), count=count)
    await post_card(bot, interaction, jobs)


async def _retry(interaction: discord.Interaction[Any], job_id: str) -> None:
    bot = _bot(interaction)
    await defer_card(interaction)
    jobs = await bot.service.regenerate(job_id, origin(interaction), DiscordActor(interaction), same_seed=True)
    await post_card(bot, interaction, jobs)


async def _stems(interaction: discord.Interaction[Any], job_id: str) -> None:
    bot = _bot(interaction)
    actor = DiscordActor(interaction)
    job = await bot.service.job_for(job_id, actor, Action.STEMS)  # answered privately before the defer
    if not job.output_path:
        raise JobStateError.keyed("refusals.unfinished_split")
    await interaction.response.defer(thinking=True)
    new = await bot.service.split_stems(
        Path(job.output_path), origin(interaction), name=job.prompt, parent=job, actor=actor
    )
    await post_card(bot, interaction, [new])


async def _plan(interaction: discord.Interaction[Any], job_id: str) -> None:
    bot = _bot(interaction)
    record = await bot.service.plan_from_job(job_id, origin(interaction), DiscordActor(interaction))
    await post_plan(bot, interaction, record)


async def _vary(interaction: discord.Interaction[Any], job_id: str) -> None:
    await _regenerate(interaction, job_id, count=VARIATIONS)


async def _extend(interaction: discord.Interaction[Any], job_id: str) -> None:
    bot = _bot(interaction)
    actor = DiscordActor(interaction)
    job = await bot.service.job_for(job_id, actor, Action.EXTEND)  # answered privately before the defer
    if not job.output_path:
        raise JobStateError.keyed("refusals.unfinished_extend")
    await interaction.response.defer(thinking=True)
    new = await bot.service.continue_track(
        Path(job.output_path), origin(interaction), extra_s=EXTEND_S, parent=job, actor=actor
    )
    await post_card(bot, interaction, [new])


async def _info(interaction: discord.Interaction[Any], job_id: str) -> None:
    bot = _bot(interaction)
    job = await bot.service.job_for(job_id, DiscordActor(interaction), Action.INFO)
    embed = info_embed(job, bot.settings.limits, bot.registry, locale=interaction.locale)
    await interaction.response.send_message(embed=embed, ephemeral=True)


async def _delete(interaction: discord.Interaction[Any], job_id: str) -> None:
    bot = _bot(interaction)
    job = await bot.service.job_for(job_id, DiscordActor(interaction), Action.DELETE)
    await interaction.response.defer(ephemeral=True, thinking=True)
    if job.channel_id is not None:
        channel = bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        _, _, members = await bot.service.card(job.id)
        # voice messages and loops in the job's channel go too
        voice = [await delivery_of(bot).voice.message_of(member) for member in members]
        loops = [loop for member in members for loop in await bot.service.loops_posted_in(member, job.channel_id)]
        posted = {job.delivery_message_id, job.card_message_id, *voice, *(loop.message_id for loop in loops)}
        for message_id in posted - {None}:
            assert message_id is not None
            with contextlib.suppress(discord.NotFound):
                await channel.get_partial_message(message_id).delete()
        for loop in loops:
            await bot.service.forget_loop(loop)
    await interaction.followup.send(say(interaction.locale, "replies.deleted"), ephemeral=True)


async def _full(interaction: discord.Interaction[Any], job_id: str) -> None:
    bot = _bot(interaction)
    latest = await bot.service.full_track(job_id, DiscordActor(interaction))
    await interaction.response.defer(thinking=True)
    files = await delivery_of(bot).files_for([latest], limit=interaction.filesize_limit)
    total = latest.context.get("total_s")
    length = f" · {int(float(total)) // 60}:{int(float(total)) % 60:02d}" if total else ""
    text = say(card_locale(interaction), "replies.whole_track", part=latest.part, length=length)
    await interaction.followup.send(text, files=files)


_ACTIONS = {
    "regen": _regenerate,
    "vary": _vary,
    "extend": _extend,
    "info": _info,
    "delete": _delete,
    "full": _full,
    "retry": _retry,
    "stems": _stems,
    "plan": _plan,
}


def _bot(interaction: discord.Interaction[Any]) -> EncoreBot:
    client = interaction.client
    assert isinstance(client, EncoreBot)
    return client


def info_embed(job: Job, limits: LimitsSettings, registry: Registry, *, locale: object = ENGLISH) -> discord.Embed:
    """Every parameter, the seed, timings and cost of a job (shown privately, in the reader's ``locale``);
    whether the cost is what it ran for is its provider's rule (``registry``)."""

    def words(key: str, **params: Any) -> str:
        return say(locale, f"info.{key}", **params)

    spec = MODELS.get(job.model)
    embed = discord.Embed(title=words("title", id=job.id), description=inert(job.prompt)[:4000] or None)
    model = f"{spec.display_name if spec else job.model} (`{job.model_ref}`)"
    embed.add_field(name=say(locale, "card.fields.model"), value=model, inline=False)
    settings = {k: v for k, v in job.input.items() if k not in ("prompt", "prompt_a", "input_audio")}
    if "input_audio" in job.input:
        settings["input_audio"] = words("your_clip")
    lines = [f"`{key}` = {inert(str(value))}" for key, value in sorted(settings.items())]
    embed.add_field(name=words("settings"), value="\n".join(lines)[:1024] or words("defaults"), inline=False)
    if job.seed is not None:
        embed.add_field(name=say(locale, "card.fields.seed"), value=str(job.seed), inline=True)
    embed.add_field(name=say(locale, "card.fields.status"), value=words(f"status.{job.status.value}"), inline=True)
    timings = []
    if job.running_at and job.submitted_at:
        timings.append(words("waited", seconds=f"{max(0.0, job.running_at - job.submitted_at):.1f}"))
    if job.predict_time_s is not None:
        timings.append(words("generated", seconds=f"{job.predict_time_s:.1f}"))
    if job.finished_at:
        timings.append(words("in_all", seconds=f"{job.finished_at - job.created_at:.1f}"))
    if timings:
        embed.add_field(name=words("timings"), value=", ".join(timings), inline=False)
    if cost_is_actual(job, limits, registry):
        embed.add_field(name=words("cost"), value=words("cost_actual", cost=f"${job.cost_usd:.4f}"), inline=True)
    else:
        embed.add_field(name=words("cost"), value=words("cost_estimated", cost=f"${job.cost_usd:.3f}"), inline=True)
    if job.part > 1:
        parent = job.context.get("parent")
        lineage = words("lineage_of", part=job.part, parent=parent) if parent else words("lineage_clip", part=job.part)
        embed.add_field(name=words("lineage"), value=lineage)
    return embed


# -- history ----------------------------------------------------------------------------------------

HISTORY_PAGE = 10


class HistoryButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"encore:history:(?P<user_id>[0-9]{1,20}):(?P<page>[0-9]{1,5})",
):
    """Turns the pages of someone's ``/music history`` (theirs only)."""

    def __init__(self, user_id: int, page: int, *, label: str, disabled: bool = False) -> None:
        super().__init__(
            discord.ui.Button(
                label=label,
                style=discord.ButtonStyle.secondary,
                custom_id=f"encore:history:{user_id}:{page}",
                disabled=disabled,
            )
        )
        self.user_id = user_id
        self.page = page

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> HistoryButton:
        return cls(int(match["user_id"]), int(match["page"]), label="")

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        if interaction.user.id != self.user_id:
            await interaction.response.send_message(
                say(interaction.locale, "replies.someone_elses_history"), ephemeral=True
            )
            return False
        return True

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        embed, view = await history_page(_bot(interaction), self.user_id, self.page, locale=interaction.locale)
        await interaction.response.edit_message(embed=embed, view=view)


async def history_page(
    bot: EncoreBot, user_id: int, page: int, *, locale: object = ENGLISH
) -> tuple[discord.Embed, discord.ui.View]:
    """A page of someone's tracks, newest first, in their ``locale`` (they alone see it)."""

    def words(key: str, **params: Any) -> str:
        return say(locale, f"history.{key}", **params)

    jobs, total = await bot.service.history(user_id, page=page, per_page=HISTORY_PAGE)
    pages = max(1, -(-total // HISTORY_PAGE))
    embed = discord.Embed(title=words("title"))
    if not jobs:
        embed.description = words("nothing_yet") if total == 0 else words("no_more")
    lines = []
    for job in jobs:
        prompt = inert(job.prompt if len(job.prompt) <= 50 else job.prompt[:49] + "…")
        if job.batch_size > 1:
            prompt = words("variations_of", count=job.batch_size, prompt=prompt)
        status = say(locale, f"info.status.{job.status.value}")
        lines.append(f"`{job.id}` · {status} · {prompt} · <t:{int(job.created_at)}:R>")
    if lines:
        embed.description = "\n".join(lines) + "\n\n" + words("repost")
    embed.set_footer(text=words("footer", page=min(page, pages - 1) + 1, pages=pages, total=total))
    view = discord.ui.View(timeout=None)
    view.add_item(HistoryButton(user_id, max(page - 1, 0), label=words("newer"), disabled=page <= 0))
    view.add_item(HistoryButton(user_id, page + 1, label=words("older"), disabled=page + 1 >= pages))
    return embed, view
