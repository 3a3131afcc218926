"""Discord delivery: the job listener the bot gives the job service (``bot.jobs.phase.JobListener``).

The job card that follows a job is kept by :mod:`bot.discord.cards`, drawn by :mod:`bot.discord.render`; the
message that brings the audio is sent by :mod:`bot.discord.send`, and the voice messages of tracks (which play
inline on phones) by :mod:`bot.discord.voice`. This class joins them for ``app``'s wiring and the cogs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import discord

from bot.config import Settings
from bot.discord.cards import Cards
from bot.discord.loops import post_delivered_loops
from bot.discord.render import ViewFactory
from bot.discord.send import Sender
from bot.discord.voice import VoiceMessages
from bot.errors import DeliveryError
from bot.guild_settings import GuildSettings
from bot.jobs.phase import Phase
from bot.jobs.service import JobService
from bot.records import Job
from bot.storage.voice_repo import VoiceRepo


class DiscordDelivery:
    def __init__(
        self,
        bot: discord.Client,
        settings: Settings,
        service: Callable[[], JobService] | None = None,
        voice: VoiceRepo | None = None,
    ) -> None:
        self._bot = bot
        self._service = service
        self._cards = Cards(bot, settings, service)

        async def rules(guild_id: int | None) -> GuildSettings:
            return await service().guild_settings(guild_id) if service is not None else GuildSettings()

        self._sender = Sender(bot, self._cards, settings.storage.dir / "deliveries", rules)

        self.voice = VoiceMessages(bot, voice, settings, rules)
        self._closed = False

    @property
    def view_factory(self) -> ViewFactory:
        """Builds a card's buttons (set by the cog that owns them)."""
        return self._cards.view_factory

    @view_factory.setter
    def view_factory(self, factory: ViewFactory) -> None:
        self._cards.view_factory = factory

    def apply_settings(self, settings: Settings) -> None:
        """The job rules of a reloaded config (``/encore reload``): attempts and delay of card edits."""
        self._cards.apply_settings(settings)

    def register_interaction(
        self, job: Job, phase: Phase, members: Sequence[Job], interaction: discord.Interaction[Any] | None
    ) -> None:
        """The card of ``job`` was posted (through ``interaction``, or as a plain channel message)."""
        self._cards.register_interaction(job, phase, members, interaction)

    def forget(self, card_key: str) -> None:
        """Drop what is known about a card (it could not be posted)."""
        self._cards.forget(card_key)

    async def close(self) -> None:
        self._closed = True
        await self._cards.close()
        await self.voice.close()

    async def job_updated(self, job: Job, phase: Phase, members: Sequence[Job]) -> None:
        if self._closed:
            return
        await self._cards.job_updated(job, phase, members)

    async def deliver(self, jobs: Sequence[Job]) -> int | None:
        if self._closed:
            raise DeliveryError(detail="shutting down")  # retried from the stored file after the restart
        message_id = await self._sender.deliver(jobs)
        self.voice.after_delivery(jobs, message_id)  # the server's voice_messages setting
        if self._service is not None and any(job.context.get("loop_bars") for job in jobs):
            # The loops asked for with the track (/music generate loop:), as a reply to it, each posted once.
            await post_delivered_loops(self._bot, self._service(), list(jobs), delivery_message_id=message_id)
        return message_id

    async def files_for(self, jobs: Sequence[Job], *, limit: int) -> list[discord.File]:
        """The files of finished jobs, each fitted under ``limit`` (for re-posting, e.g. a full track)."""
        return await self._sender.files_for(jobs, limit=limit)
