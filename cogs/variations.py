"""Each variation of a batch is a track of its own: a row of buttons per variation on the batch's card.

A finished batch card (``count`` 2 to 4) keeps its own buttons on the first row and gets one row per variation
below, the way Midjourney's grid offers U1-U4 and V1-V4::

    🔁 Regenerate   📋 Info   🗑️ Delete
    ⏩ 1 · Extend +10s   🎲 1 · Variations   🎚️ 1 · Stems   📋 1 · Info
    ⏩ 2 · Extend +10s   🎲 2 · Variations   🎚️ 2 · Stems   📋 2 · Info
    ⚠️ 3 · failed                                   (disabled)

Each button's custom id carries its variation's own job (``encore:var:<action>:<job id>``), so it works after
restarts and on cards ``/music show`` posts again, and it runs exactly what the same button on a single track's
card runs (``cogs.views``) on that variation: Extend continues it, Variations makes a new batch from it, Stems
splits it, Info shows it. Who may is the buttons' rule, in the job's own server (``bot.jobs.access``), and a job
starts only through the gate. A variation that failed or was canceled shows one disabled button saying so; a
click that still comes for it (Discord asks apps not to trust a custom id) is answered privately, and nothing
starts.

Discord allows 5 rows of 5 buttons: the card's own buttons take the first row, and the variations the last
ones, one row each (``MAX_BATCH`` is at most 4).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import discord
from discord.ext import commands

from bot.catalog import MAX_BATCH, MODELS, Capability
from bot.discord.client import EncoreBot
from bot.discord.replies import discord_text, reply_privately
from bot.errors import BotError, JobStateError
from bot.jobs.access import Action
from bot.jobs.phase import Phase
from bot.locales import ENGLISH, Said, Stored
from bot.locales import text as say
from bot.records import Job, JobStatus
from cogs._common import DiscordActor
from cogs.views import EXTEND_S, RESULT_ACTIONS, ResultButton, card_view

ROWS = 5  # Discord's action rows per message
assert MAX_BATCH < ROWS, "a batch's variations and the card's own row must fit in Discord's 5 rows"

#: What each variation's row offers, in order, and the right each needs (the single track's buttons').
VARIATION_ACTIONS = {"extend": Action.EXTEND, "vary": Action.VARY, "stems": Action.STEMS, "info": Action.INFO}
NO_TRACK_ACTIONS = ("extend", "vary", "stems", "info")  # variations.<state>.<action> in the catalogues


def card_view_with_variations(
    job: Job, phase: Phase, members: Sequence[Job] = (), *, locale: object = ENGLISH
) -> discord.ui.View:
    """The card's buttons (``cogs.views.card_view``) and, on a finished batch, a row per variation; labelled in
    ``locale`` (the server's, like the card)."""
    view = card_view(job, phase, members, locale=locale)
    if phase == Phase.DONE and len(members) > 1:
        for row, member in enumerate(members[:MAX_BATCH], start=ROWS - min(len(members), MAX_BATCH)):
            for button in variation_row(member, row, locale):
                view.add_item(button)
    return view


def variation_row(member: Job, row: int, locale: object = ENGLISH) -> list[VariationButton]:
    """One variation's buttons: Extend (models that continue), Variations, Stems, Info; one disabled button
    saying so when it has no track."""
    number = member.batch_index + 1
    if member.status != JobStatus.DELIVERED:
        what = "canceled" if member.status == JobStatus.CANCELED else "failed"
        label = f"{number} · {say(locale, f'buttons.variation_{what}')}"
        return [VariationButton("info", member.id, number=number, row=row, label=label, disabled=True)]
    spec = MODELS.get(member.model)
    extends = spec is not None and Capability.CONTINUATION in spec.capabilities
    return [
        VariationButton(action, member.id, number=number, row=row, locale=locale)
        for action in VARIATION_ACTIONS
        if action != "extend" or extends
    ]


class VariationButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"encore:var:(?P<action>extend|vary|stems|info):(?P<job_id>[a-z0-9]{1,32})",
):
    """One action on one variation of a batch. The custom id carries the variation's job."""

    def __init__(
        self,
        action: str,
        job_id: str,
        *,
        number: int = 0,
        row: int | None = None,
        label: str | None = None,
        disabled: bool = False,
        locale: object = ENGLISH,
    ) -> None:
        name, emoji = say(locale, f"buttons.{action}", seconds=EXTEND_S), RESULT_ACTIONS[action]
        super().__init__(
            discord.ui.Button(
                label=label or f"{number} · {name}",
                emoji="⚠️" if disabled else emoji,
                style=discord.ButtonStyle.secondary,
                custom_id=f"encore:var:{action}:{job_id}",
                disabled=disabled,
            ),
            row=row,
        )
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> VariationButton:
        return cls(match["action"], match["job_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        client = interaction.client
        assert isinstance(client, EncoreBot)
        try:
            job = await client.service.job_for(self.job_id, DiscordActor(interaction), VARIATION_ACTIONS[self.action])
            if job.status != JobStatus.DELIVERED:
                raise _no_track(job, self.action)
        except BotError as exc:
            await reply_privately(interaction, discord_text(exc, interaction.locale))
            return
        # The very button a single track's card has, on this variation.
        await ResultButton(self.action, self.job_id).callback(interaction)


def _no_track(job: Job, action: str) -> JobStateError:
    """Why a variation that has no track can't be acted on (a click on a disabled or missing button)."""
    which = Said("variations.which", index=job.batch_index + 1) if job.batch_id else Said("variations.this_track")
    if not job.status.is_terminal:
        return JobStateError.keyed(f"variations.unfinished.{action}", which=which)
    if job.status == JobStatus.CANCELED:
        return JobStateError.keyed(f"variations.canceled.{action}", which=which)
    if job.error:
        return JobStateError.keyed(f"variations.failed_why.{action}", which=which, reason=Stored(job.error))
    return JobStateError.keyed(f"variations.failed.{action}", which=which)


class Variations(commands.Cog):
    """Serves the variation buttons of every batch card, old ones included."""

    def __init__(self, bot: EncoreBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(VariationButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(VariationButton)


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, EncoreBot)
    await bot.add_cog(Variations(bot))
