"""Answering people in Discord: privately, with known errors in their own words and moments shown live."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import discord

from bot.errors import BotError
from bot.jobs.limits import LimitError
from bot.locales import ENGLISH, text

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


def server_locale(guild: discord.Guild | None) -> str:
    """The language of what Encore posts for everyone in a server: its preferred locale (English in DMs)."""
    return str(guild.preferred_locale) if guild is not None else ENGLISH


def discord_moment(moment: datetime) -> str:
    """A moment as Discord shows it: relative ("in 5 hours"), in each reader's own time zone."""
    return f"<t:{int(moment.timestamp())}:R>"


def discord_text(error: BotError, locale: object = None) -> str:
    """What a known error says in Discord, in ``locale`` (the reader's, ``Interaction.locale``) when it is one
    of the catalogue's (English otherwise, and for errors that have only English): any moment (a quota's
    reset) shown live."""
    if isinstance(error, LimitError):
        return error.render(discord_moment, locale)
    if error.key is not None:
        return text(locale, error.key, **error.params)
    return error.user_message
