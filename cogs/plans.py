"""``/music plan``: an ElevenLabs composition plan as a card people edit section by section, then compose.

Plans live in SQLite and every control is a DynamicItem whose custom id carries the plan id, so a plan
keeps working after restarts; only the person who made it can change or compose it.
"""

from __future__ import annotations

import re
from typing import Any

import discord
from discord.ext import commands

from bot.catalog import plans
from bot.discord.client import EncoreBot
from bot.discord.replies import discord_text, reply_privately
from bot.errors import BotError, InvalidRequestError
from bot.locales import ENGLISH
from bot.locales import text as say
from bot.storage.plans_repo import PlanRecord
from bot.text import inert
from cogs._common import card_locale, defer_card, origin, post_card

_ID = r"(?P<plan_id>[a-z0-9]{1,32})"


def _clock(ms: int) -> str:
    seconds = round(ms / 1000)
    return f"{seconds // 60}:{seconds % 60:02d}"


def plan_embed(record: PlanRecord, locale: object = ENGLISH) -> discord.Embed:
    """A composition plan people can read, in ``locale`` (the server's: the card is public): global styles,
    then each section with its lines."""

    def words(key: str, **params: Any) -> str:
        return say(locale, f"plans.{key}", **params)

    items = plans.sections(record.plan)
    embed = discord.Embed(title=words("title", prompt=inert(record.prompt))[:256], colour=discord.Colour.purple())
    liked, avoided = plans.global_styles(record.plan)
    total = _clock(plans.total_ms(record.plan))
    summary = [words("summary", count=len(items), total=total, model=record.model_id)]
    if liked:
        summary.append(words("styles", styles=inert(", ".join(liked))))
    if avoided:
        summary.append(words("avoid", styles=inert(", ".join(avoided))))
    embed.description = "\n".join(summary)[:4096]
    for number, section in enumerate(items[:25], start=1):
        parts = []
        if section.styles:
            parts.append("*" + inert(", ".join(section.styles)) + "*")
        if section.avoid:
            parts.append(words("section_avoid", styles=inert(", ".join(section.avoid))))
        parts.extend([inert(line) for line in section.lines[:4]] or [words("instrumental")])
        if len(section.lines) > 4:
            parts.append(words("more_lines", count=len(section.lines) - 4))
        embed.add_field(
            name=f"{number}. {inert(section.name)} · {section.duration_ms / 1000:g} s"[:256],
            value="\n".join(parts)[:1024],
            inline=False,
        )
    embed.set_footer(text=words("footer", id=record.id))
    return embed


def plan_view(record: PlanRecord, locale: object = ENGLISH) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    items = plans.sections(record.plan)
    options = [
        discord.SelectOption(label=f"{i}. {s.name}"[:100], value=str(i - 1), description=f"{s.duration_ms / 1000:g} s")
        for i, s in enumerate(items[:25], start=1)
    ]
    view.add_item(SectionSelect(record.id, "edit", options, locale=locale))
    view.add_item(SectionSelect(record.id, "remove", options, locale=locale))
    view.add_item(PlanButton(record.id, "add", locale=locale))
    view.add_item(PlanButton(record.id, "compose", locale=locale))
    return view


def _bot(interaction: discord.Interaction[Any]) -> EncoreBot:
    client = interaction.client
    assert isinstance(client, EncoreBot)
    return client


async def _refresh_card(interaction: discord.Interaction[Any], record: PlanRecord) -> None:
    """Show the plan's new state on its card (a modal submit can't edit it directly: edit by id)."""
    if record.message_id is None or record.channel_id is None:
        return
    channel = _bot(interaction).get_partial_messageable(record.channel_id, guild_id=record.guild_id)
    locale = card_locale(interaction)
    try:
        await channel.get_partial_message(record.message_id).edit(
            embed=plan_embed(record, locale), view=plan_view(record, locale)
        )
    except discord.HTTPException as exc:
        raise BotError(key="refusals.plan_card", detail=str(exc)) from None


class SectionModal(discord.ui.Modal):
    """One section's name, length, styles and lyrics (prefilled when editing)."""

    def __init__(
        self, plan_id: str, index: int | None, section: plans.Section | None, *, locale: object = ENGLISH
    ) -> None:
        def words(key: str) -> str:
            return say(locale, f"plans.dialog.{key}")

        super().__init__(title=words("edit" if section else "add"), timeout=900)
        self.plan_id = plan_id
        self.index = index
        current = section or plans.Section(name="", duration_ms=10_000)
        self.name: discord.ui.TextInput[Any] = discord.ui.TextInput(
            label=words("name"), default=current.name or None, max_length=100, placeholder=words("name_example")
        )
        self.seconds: discord.ui.TextInput[Any] = discord.ui.TextInput(
            label=words("seconds"), default=f"{current.duration_ms / 1000:g}", max_length=5
        )
        styles, avoid = ", ".join(current.styles) or None, ", ".join(current.avoid) or None
        self.styles: discord.ui.TextInput[Any] = discord.ui.TextInput(
            label=words("styles"), default=styles, required=False, max_length=1000
        )
        self.avoid: discord.ui.TextInput[Any] = discord.ui.TextInput(
            label=words("avoid"), default=avoid, required=False, max_length=1000
        )
        self.lyrics: discord.ui.TextInput[Any] = discord.ui.TextInput(
            label=words("lyrics"),
            style=discord.TextStyle.paragraph,
            default="\n".join(current.lines) or None,
            required=False,
            max_length=4000,
        )
        for item in (self.name, self.seconds, self.styles, self.avoid, self.lyrics):
            self.add_item(item)

    def section(self) -> plans.Section:
        try:
            seconds = float(self.seconds.value.strip().removesuffix("s"))
        except ValueError:
            raise InvalidRequestError.keyed("refusals.plan_seconds") from None
        return plans.Section(
            name=self.name.value.strip(),
            duration_ms=round(seconds * 1000),
            styles=plans.split_list(self.styles.value),
            avoid=plans.split_list(self.avoid.value),
            lines=[line.strip() for line in self.lyrics.value.splitlines() if line.strip()],
        )

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        section = self.section()
        index = self.index

        def change(plan: dict[str, Any]) -> dict[str, Any]:
            if index is None:
                return plans.add_section(plan, section)
            return plans.edit_section(plan, index, section)

        record = await _bot(interaction).service.change_plan(self.plan_id, interaction.user.id, change)
        done = "plans.added" if index is None else "plans.updated"
        name = inert(section.name, previews=False)
        await interaction.response.send_message(say(interaction.locale, done, section=name), ephemeral=True)
        await _refresh_card(interaction, record)

    async def on_error(self, interaction: discord.Interaction[Any], error: Exception) -> None:
        text = (
            discord_text(error, interaction.locale)
            if isinstance(error, BotError)
            else say(interaction.locale, "replies.oops")
        )
        await reply_privately(interaction, text)


class SectionSelect(
    discord.ui.DynamicItem[discord.ui.Select[Any]],
    template=r"encore:plan(?P<action>edit|remove):" + _ID,
):
    """Pick a section to edit (opens a form) or to remove."""

    def __init__(
        self, plan_id: str, action: str, options: list[discord.SelectOption] | None = None, *, locale: object = ENGLISH
    ) -> None:
        placeholder = say(locale, f"plans.pick_{action}")
        super().__init__(
            discord.ui.Select(
                custom_id=f"encore:plan{action}:{plan_id}",
                placeholder=placeholder,
                options=options or [discord.SelectOption(label="-", value="0")],
            )
        )
        self.plan_id = plan_id
        self.action = action

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> SectionSelect:
        return cls(match["plan_id"], match["action"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        service = _bot(interaction).service
        try:
            index = int(self.item.values[0])
            record = await service.get_plan(self.plan_id)
            if record.user_id != interaction.user.id:
                raise InvalidRequestError.keyed("refusals.plan_not_yours")
            items = plans.sections(record.plan)
            if not 0 <= index < len(items):
                raise InvalidRequestError.keyed("refusals.plan_section_gone")
            if self.action == "edit":
                await interaction.response.send_modal(
                    SectionModal(self.plan_id, index, items[index], locale=interaction.locale)
                )
                return
            record = await service.change_plan(
                self.plan_id, interaction.user.id, lambda plan: plans.remove_section(plan, index)
            )
            locale = card_locale(interaction)
            await interaction.response.edit_message(embed=plan_embed(record, locale), view=plan_view(record, locale))
        except BotError as exc:
            await interaction.response.send_message(discord_text(exc, interaction.locale), ephemeral=True)


class PlanButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"encore:plan(?P<action>add|compose):" + _ID,
):
    def __init__(self, plan_id: str, action: str, *, locale: object = ENGLISH) -> None:
        label = say(locale, f"plans.{action}")
        style = discord.ButtonStyle.success if action == "compose" else discord.ButtonStyle.secondary
        super().__init__(discord.ui.Button(label=label, style=style, custom_id=f"encore:plan{action}:{plan_id}"))
        self.plan_id = plan_id
        self.action = action

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> PlanButton:
        return cls(match["plan_id"], match["action"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        bot = _bot(interaction)
        try:
            record = await bot.service.get_plan(self.plan_id)
            if record.user_id != interaction.user.id:
                raise InvalidRequestError.keyed("refusals.plan_not_yours_either")
            if self.action == "add":
                await interaction.response.send_modal(SectionModal(self.plan_id, None, None, locale=interaction.locale))
                return
            await defer_card(interaction)  # admission waits on the database
            job = await bot.service.compose_plan(self.plan_id, origin(interaction))
        except BotError as exc:
            await reply_privately(interaction, discord_text(exc, interaction.locale))
            return
        await post_card(bot, interaction, [job])


async def post_plan(bot: EncoreBot, interaction: discord.Interaction[Any], record: PlanRecord) -> None:
    """Answer with the plan card (first response or after a defer) and remember its message."""
    locale = card_locale(interaction)
    embed, view = plan_embed(record, locale), plan_view(record, locale)
    if interaction.response.is_done():
        message = await interaction.edit_original_response(embed=embed, view=view)
        message_id: int | None = message.id
    else:
        response = await interaction.response.send_message(embed=embed, view=view)
        message_id = response.message_id
    if message_id is not None:
        await bot.service.set_plan_message(record.id, message_id)


class Plans(commands.Cog):
    def __init__(self, bot: EncoreBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(SectionSelect, PlanButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(SectionSelect, PlanButton)


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, EncoreBot)
    await bot.add_cog(Plans(bot))


__all__ = ["SectionModal", "plan_embed", "plan_view", "post_plan"]
