"""Explicit songs: ElevenLabs marks a song explicit (``song_metadata.is_explicit``); where Encore may show it.

In a channel marked age-restricted (Discord's ``nsfw`` flag; a thread goes by its parent) an explicit song is
posted as any other. Elsewhere the ``explicit_songs`` setting of the channel's server decides: ``spoiler``
(the default) posts its files as spoilers (Discord hides an attachment named ``SPOILER_…`` until it is
clicked), ``refuse`` doesn't post it at all; in a DM it is a spoiler. A voice message can't be a spoiler, so
an explicit song is one only in an age-restricted channel. Stems of an explicit song are explicit too
(``bot.jobs.recipes`` marks them). ElevenLabs may leave ``is_explicit`` null: that counts as not explicit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from enum import StrEnum

import discord

from bot.errors import BotError
from bot.guild_settings import GuildSettings
from bot.records import Job

log = logging.getLogger(__name__)

CHANNEL_LOOKUP_TIMEOUT_S = 5.0
REFUSED = (
    "ElevenLabs marked this song explicit, and this server posts explicit songs only in age-restricted channels, "
    "so I didn't post it. It doesn't count against your daily tracks."
)


class Showing(StrEnum):
    NORMAL = "normal"
    SPOILER = "spoiler"  # files as spoilers, text behind spoiler bars
    REFUSED = "refused"


def is_explicit(job: Job) -> bool:
    """ElevenLabs marked the job's song explicit (or it is made from one: its stems). Unknown counts as no."""
    song = job.result.get("metadata")
    return (isinstance(song, dict) and song.get("is_explicit") is True) or job.context.get("explicit") is True


async def age_restricted(bot: discord.Client, channel_id: int | None) -> bool:
    """Whether ``channel_id`` is marked age-restricted (a thread: its parent), from the cache or from Discord.

    BotError if Discord can't say (it is asked only for a channel this process doesn't hold)."""
    if channel_id is None:
        return False
    channel = bot.get_channel(channel_id)
    if channel is None:
        try:
            async with asyncio.timeout(CHANNEL_LOOKUP_TIMEOUT_S):
                channel = await bot.fetch_channel(channel_id)
                if isinstance(channel, discord.Thread):
                    channel = bot.get_channel(channel.parent_id) or await bot.fetch_channel(channel.parent_id)
        except (discord.HTTPException, discord.InvalidData, TimeoutError) as exc:
            raise BotError(key="refusals.age_check_failed", detail=repr(exc)) from None
    if isinstance(channel, discord.Thread):
        return channel.is_nsfw()
    return isinstance(channel, discord.abc.GuildChannel) and channel.is_nsfw()


Rules = Callable[[int | None], Awaitable[GuildSettings]]


async def showing(
    bot: discord.Client, rules: Rules, job: Job, *, channel_id: int | None, guild_id: int | None
) -> Showing:
    """How ``job``'s song may be shown in ``channel_id`` (of server ``guild_id``; None: a DM): as it is, as a
    spoiler, or not at all. The server whose channel it is decides; in a DM it is a spoiler."""
    if not is_explicit(job) or await age_restricted(bot, channel_id):
        return Showing.NORMAL
    setting = (await rules(guild_id)).explicit_songs if guild_id is not None else "spoiler"
    return Showing.REFUSED if setting == "refuse" else Showing.SPOILER
