"""**Lyrics**: a song's lyrics to read, and synced lyrics (an ``.lrc`` file) that music players show line by line.

The button sits on a finished song's card (``encore:lyrics:<job id>``, so it works after restarts). Who may use
it is the rule every button follows (``bot.jobs.access``, Action.LYRICS): the requester anywhere, anyone else
who can see the job's channel from within its server. The answer is private, to whoever asked: lyrics are long,
and a public answer per click would fill the channel.

The lyrics are the song's composition plan's (``bot.jobs.lyrics``), which may be people's own text: each line
is shown as typed (markdown escaped, mentions broken so none shows as one), in embeds of at most
:data:`PAGE_CHARS`, at most :data:`MAX_PAGES` of them. The ``.lrc`` file holds every line, timed by
ElevenLabs' word timestamps (a song made before Encore asked for them has none). An explicit song
(``bot.discord.explicit``) is shown as it is posted where the button is pressed: behind spoiler bars, its file
a spoiler, outside age-restricted channels (and in DMs); not at all where that channel's server refuses them.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import discord
from discord.ext import commands

from bot.catalog import MODELS, Capability
from bot.catalog.lyrics import LyricLine, clean, lrc, lyric_lines
from bot.catalog.plans import total_ms
from bot.discord.client import EncoreBot
from bot.discord.explicit import Showing, showing
from bot.discord.replies import discord_text, reply_privately
from bot.discord.voice import is_track
from bot.errors import BotError, JobStateError
from bot.jobs.access import Action
from bot.locales import ENGLISH
from bot.locales import text as say
from bot.naming import audio_filename, truncate
from bot.records import Job
from bot.text import inert
from cogs._common import DiscordActor

PAGE_CHARS = 3900  # an embed's description holds 4,096: room for the spoiler bars
MAX_PAGES = 3


def lyrics_button(job: Job, members: Sequence[Job], locale: object = ENGLISH) -> LyricsButton | None:
    """The button for a finished song's card (a song with vocals or not: an instrumental says so)."""
    spec = MODELS.get(job.model)
    vocals = spec is not None and Capability.VOCALS in spec.capabilities
    return LyricsButton(job.id, locale) if vocals and len(members) <= 1 and is_track(job) else None


def unmentioned(text: str) -> str:
    """``text`` with no mention in it: a zero-width space after each ``@`` and each ``<`` that opens a channel
    or command mention keeps ``@everyone``, ``<@id>``, ``<@&id>``, ``<#id>`` and ``</cmd:id>`` as plain text."""
    return re.sub(r"<(?=[#/])", "<\u200b", text.replace("@", "@\u200b"))


def shown(text: str) -> str:
    return unmentioned(inert(text))  # in an embed: a URL never unfurls


def pages(lines: Sequence[LyricLine], locale: object = ENGLISH) -> tuple[list[str], bool]:
    """The lyrics as embed descriptions, each section under its name; True if they didn't all fit."""
    out: list[str] = []
    page: list[str] = []
    section: str | None = None
    for line in lines:
        heading = f"**{shown(line.section)}**"
        starts = line.section != section
        section = line.section
        parts = [*([""] if page else []), heading] if starts else []
        parts.append(shown(line.text))
        if page and len("\n".join([*page, *parts])) > PAGE_CHARS:
            out.append("\n".join(page))
            if len(out) == MAX_PAGES:
                return out, True
            page = []
            again = say(locale, "lyrics.continued", section=heading)
            parts = [heading if starts else again, shown(line.text)]
        page += parts
    if page:
        out.append("\n".join(page))
    return out, False


def answer(job: Job, show: Showing, locale: object = ENGLISH) -> tuple[list[discord.Embed], list[discord.File]]:
    """The private answer, in ``locale``: the lyrics' pages and the synced lyrics. JobStateError if there is
    nothing to show."""
    plan = job.result.get("plan")
    lines = lyric_lines(plan if isinstance(plan, dict) else None)
    if not lines:
        if isinstance(plan, dict) or job.input.get("force_instrumental"):
            raise JobStateError.keyed("lyrics.instrumental")
        raise JobStateError.keyed("lyrics.missing")
    song = job.result.get("metadata") or {}
    title = clean(str(song.get("title") or job.prompt or say(locale, "card.untitled")), 100)
    texts, cut = pages(lines, locale)
    times = job.result.get("lyric_times_ms")
    files: list[discord.File] = []
    stem = Path(audio_filename(job)).stem
    spoiler = show is Showing.SPOILER
    if isinstance(times, list) and len(times) == len(lines) and all(isinstance(t, int) for t in times):
        length_ms = total_ms(plan) if isinstance(plan, dict) else 0
        length_ms = length_ms or int((job.duration_s or 0.0) * 1000)
        synced = lrc(lines, times, title=title, length_ms=length_ms)
        files.append(discord.File(io.BytesIO(synced.encode()), filename=f"{stem}.lrc", spoiler=spoiler))
        note = say(locale, "lyrics.synced")
    else:
        note = say(locale, "lyrics.unsynced")
        if cut:
            whole = "\n".join(line.text for line in lines) + "\n"
            files.append(discord.File(io.BytesIO(whole.encode()), filename=f"{stem}-lyrics.txt", spoiler=spoiler))
    if cut:
        note = f"{say(locale, 'lyrics.more')} {note}"
    embeds = []
    for index, text in enumerate(texts):
        embed = discord.Embed(
            title=truncate(say(locale, "lyrics.title", title=inert(title)), 256) if index == 0 else None,
            description=f"||{text}||" if spoiler else text,
            colour=discord.Colour.green(),
        )
        if spoiler and index == 0:
            embed.set_author(name=say(locale, "lyrics.spoiler"))
        if index == len(texts) - 1:
            embed.set_footer(text=note)
        embeds.append(embed)
    return embeds, files


class LyricsButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"encore:lyrics:(?P<job_id>[a-z0-9]{1,32})"
):
    def __init__(self, job_id: str, locale: object = ENGLISH) -> None:
        super().__init__(
            discord.ui.Button(
                label=say(locale, "buttons.lyrics"),
                emoji="🎤",
                style=discord.ButtonStyle.secondary,
                custom_id=f"encore:lyrics:{job_id}",
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> LyricsButton:
        return cls(match["job_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        client = interaction.client
        assert isinstance(client, EncoreBot)
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            job = await client.service.job_for(self.job_id, DiscordActor(interaction), Action.LYRICS)
            where = {"channel_id": interaction.channel_id, "guild_id": interaction.guild_id}
            show = await showing(client, client.service.guild_settings, job, **where)
            if show is Showing.REFUSED:
                raise JobStateError.keyed("lyrics.explicit_here")
            embeds, files = answer(job, show, interaction.locale)
        except BotError as exc:
            await reply_privately(interaction, discord_text(exc, interaction.locale))
            return
        none = discord.AllowedMentions.none()
        for index, embed in enumerate(embeds):
            await interaction.followup.send(
                embed=embed, files=files if index == 0 else [], ephemeral=True, allowed_mentions=none
            )


class Lyrics(commands.Cog):
    """Serves the Lyrics buttons of every song's card, old ones included."""

    def __init__(self, bot: EncoreBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(LyricsButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(LyricsButton)


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, EncoreBot)
    await bot.add_cog(Lyrics(bot))
