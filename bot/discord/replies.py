"""Answering people in Discord: privately, with known errors in their own words and moments shown live."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import discord

from bot.errors import BotError
from bot.jobs.limits import LimitError

log = logging.getLogger(__name__)


async def reply_privately(interaction: discord.Interaction[Any], text: str) -> None:
    """Tell only the person who asked: the first response if there is none yet, else an ephemeral followup.

    After a public defer the first followup would fill in the "is thinking…" message for everyone to see
    (Discord ignores its ephemeral flag), so that message is deleted first.
    """
    if not interaction.response.is_done():
        await interaction.response.send_message(text, ephemeral=True)
        return
    if interaction.response.type == discord.InteractionResponseType.deferred_channel_message:
        try:
            original = await interaction.original_response()
            if original.flags.loading and not original.flags.ephemeral:
                await interaction.delete_original_response()
        except discord.HTTPException as exc:
            log.warning("could not remove the public 'thinking' message of interaction %s: %s", interaction.id, exc)
    await interaction.followup.send(text, ephemeral=True)


def discord_moment(moment: datetime) -> str:
    """A moment as Discord shows it: relative ("in 5 hours"), in each reader's own time zone."""
    return f"<t:{int(moment.timestamp())}:R>"


def discord_text(error: BotError) -> str:
    """What a known error says in Discord: its message, with any moment (a quota's reset) shown live."""
    return error.render(discord_moment) if isinstance(error, LimitError) else error.user_message
