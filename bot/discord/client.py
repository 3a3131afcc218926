"""The Discord client: the bot, its command tree's one error handler, command sync, and its orderly close.

The core (:class:`bot.app.Core`) is built outside and passed in (discord.py's advanced startup); the client
loads the cogs, gives the job service its listener (:class:`bot.discord.delivery.DiscordDelivery`) and
starts it. It is sharded (``[discord] shard_count`` and ``shard_ids``; see ``bot.discord.shards``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
from pathlib import Path
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot import locales
from bot.app import Core
from bot.config import Settings
from bot.discord.delivery import DiscordDelivery
from bot.discord.replies import discord_text, reply_privately
from bot.discord.shards import IdentifyGate, shard_states
from bot.discord.translator import CatalogueTranslator
from bot.errors import BotError, StorageError
from bot.jobs.service import JobService
from bot.locales import text as say
from bot.providers.plugins import Registry
from bot.text import quoted
from bot.web.ops import ShardState

log = logging.getLogger(__name__)

HANDLER_GRACE_S = 3.0  # when Encore stops, commands and clicks being handled get this long to finish
GATEWAY_INFO_TIMEOUT_S = 10.0  # asking Discord how to shard must not hold up a start for long
EXTENSIONS = (
    "cogs.music",
    "cogs.audio_in",
    "cogs.plans",
    "cogs.admin",
    "cogs.phone",
    "cogs.loops",
    "cogs.variations",
    "cogs.lyrics",
)


class EncoreTree(app_commands.CommandTree["EncoreBot"]):
    """One handler for every command's errors: a known error is one ephemeral line; others get an apology."""

    async def on_error(self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError) -> None:
        cause: BaseException = error
        if isinstance(error, app_commands.CommandInvokeError):
            cause = error.original
        locale = interaction.locale
        if isinstance(cause, BotError):
            message = discord_text(cause, locale)
        elif isinstance(cause, app_commands.CheckFailure):
            message = getattr(cause, "user_message", None) or say(locale, "replies.check_failed")
        elif isinstance(cause, app_commands.TransformerError):
            message = say(locale, "replies.not_understood", value=quoted(str(cause.value)))
        else:
            reference = secrets.token_hex(4)
            command = interaction.command.qualified_name if interaction.command else "?"
            log.error(
                "command %s failed (ref %s) for user %s in channel %s with options %s",
                command,
                reference,
                interaction.user.id,
                interaction.channel_id,
                interaction.namespace,
                exc_info=cause,
            )
            message = say(locale, "replies.apology", reference=reference)
        try:
            await reply_privately(interaction, message)
        except discord.HTTPException as exc:
            log.warning("could not report an error to user %s: %s", interaction.user.id, exc)


def commands_digest(tree: app_commands.CommandTree[Any], guild: discord.abc.Snowflake | None) -> str:
    """A hash of exactly what ``tree.sync(guild=guild)`` would send to Discord."""
    payload = [command.to_dict(tree) for command in tree.get_commands(guild=guild)]
    payload.sort(key=lambda command: (command.get("type", 1), command["name"]))
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # Their translations are synced with them: a changed catalogue is changed commands.
    return hashlib.sha256(text.encode() + locales.digest().encode()).hexdigest()


class EncoreBot(commands.AutoShardedBot):
    """The Discord client. The core is built outside and passed in (discord.py's advanced startup).

    It connects ``[discord] shard_count`` shards (0: as many as Discord recommends), or only ``shard_ids``
    of them, each answering the interactions of its own servers (and shard 0 those of DMs).

    ``sync_only``: log in, load the commands and sync them, nothing else (``python -m bot sync-commands``).
    """

    def __init__(self, core: Core, *, config_path: Path | None = None, sync_only: bool = False, **options: Any) -> None:
        intents = discord.Intents.default()
        sharding = core.settings.discord
        if sharding.shard_count:  # else discord.py asks Discord (GET /gateway/bot)
            options["shard_count"] = sharding.shard_count
        if sharding.shard_ids:  # else every shard of the count
            options["shard_ids"] = list(sharding.shard_ids)
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            help_command=None,
            tree_cls=EncoreTree,
            **options,
        )
        self.core = core
        self.config_path = config_path  # what /encore reload reads again
        core.on_reload = self.reload_settings  # another process's reload, heard: here as if asked here
        self.sync_only = sync_only
        # Set in setup_hook, once the client can talk to Discord.
        self.delivery: DiscordDelivery | None = None
        self.identify_gate = IdentifyGate()
        self.recommended_shards: int | None = None  # what Discord's GET /gateway/bot said at startup

    @property
    def settings(self) -> Settings:
        """The settings in use (``/encore reload`` replaces some sections)."""
        return self.core.settings

    @property
    def registry(self) -> Registry:
        """The providers' declarations (what a job's provider does, costs, is called)."""
        return self.core.registry

    def read_settings(self) -> Settings:
        """The settings as the config file (``config_path``) and the environment say now (blocking: a thread)."""
        return self.core.registry.load_settings(self.config_path)

    def reload_settings(self, fresh: Settings) -> None:
        """``/encore reload``: the reloadable sections of ``fresh`` reach the core and card delivery."""
        settings = self.core.reload(fresh)
        if self.delivery is not None:
            self.delivery.apply_settings(settings)

    @property
    def service(self) -> JobService:
        assert self.core.service is not None, "the job service starts in setup_hook"
        return self.core.service

    async def setup_hook(self) -> None:
        self.delivery = DiscordDelivery(self, self.settings, service=lambda: self.service, voice=self.core.voice)
        await self.tree.set_translator(CatalogueTranslator())  # commands in each person's language
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        if self.sync_only:
            return
        await self._ask_how_to_shard()
        await self.core.start_service(self.delivery, serve_web=True, gateway=self.gateway_shards)
        if self.settings.discord.sync_commands:
            await self.sync_commands(force=False)

    async def _ask_how_to_shard(self) -> None:
        """Discord's ``GET /gateway/bot``: the shard count it recommends, and how many shards may identify at
        once (``max_concurrency``). Without an answer Encore identifies one shard per 5 s, which is always safe."""
        try:
            async with asyncio.timeout(GATEWAY_INFO_TIMEOUT_S):
                recommended, _, limits = await self.http.get_bot_gateway()
        except (discord.HTTPException, discord.GatewayNotFound, TimeoutError) as exc:
            log.warning("could not ask Discord how to shard (%s): one shard identifies per 5 s", exc)
            return
        self.recommended_shards = recommended
        self.identify_gate.max_concurrency = max(1, limits["max_concurrency"])
        ids = self.shard_ids or range(self.shard_count or recommended)
        log.info(
            "connecting shard(s) %s of %d (Discord recommends %d; %d may identify at once; %d session starts left)",
            ",".join(map(str, ids)),
            self.shard_count or recommended,
            recommended,
            self.identify_gate.max_concurrency,
            limits["remaining"],
        )

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Identify as fast as Discord allows (``max_concurrency``), not discord.py's 5 s before every shard."""
        await self.identify_gate.wait_turn(shard_id or 0)

    def gateway_shards(self) -> dict[int, ShardState]:
        """This process's gateway shards, each up (ready, its websocket open, not reconnecting) or not."""
        return shard_states(self)

    async def sync_commands(self, *, force: bool = True) -> int:
        """Sync the command tree (to the dev guilds, or globally); returns how many commands were synced.

        Each scope's synced commands are remembered as a hash in the database. Unless ``force``, a scope whose
        commands are what was last synced there is left alone: discord.py's authors advise against syncing at
        every start, and Discord counts the commands it creates (200 a day per server).
        """
        count = 0
        guilds: list[discord.Object | None] = [discord.Object(id=g) for g in self.settings.discord.dev_guild_ids]
        for guild in guilds or [None]:
            scope = "global" if guild is None else f"guild {guild.id}"
            if guild is not None:
                self.tree.copy_global_to(guild=guild)
            digest = commands_digest(self.tree, guild)
            key = f"commands:{self.application_id}:{'global' if guild is None else guild.id}"
            if not force and await self.core.state.get(key) == digest:
                log.info("the %s commands are as last synced: not syncing them", scope)
                continue
            synced = await self.tree.sync(guild=guild)
            count += len(synced)
            log.info("synced %d %s command(s)", len(synced), scope)
            try:
                await self.core.state.put(key, digest, now=time.time())
            except StorageError as exc:  # they are synced; the next start syncs them again
                log.warning("could not record the %s commands as synced: %s", scope, exc)
        return count

    async def close(self) -> None:
        # Commands and clicks being handled finish first (they may be storing a job or its card); then the job
        # service stops, so nothing reaches for Discord or the database while the client shuts down.
        await _finish_handlers(HANDLER_GRACE_S)
        await self.core.stop_service()
        if self.delivery is not None:
            await self.delivery.close()
        await super().close()


# The tasks discord.py runs each interaction handler and event listener in (it keeps no list of them).
_HANDLER_TASKS = (
    "CommandTree-invoker",
    "discord-ui-view-dispatch-",
    "discord-ui-dynamic-item-",
    "discord-ui-modal-dispatch-",
    "discord.py: on_message",
)


async def _finish_handlers(timeout_s: float) -> None:
    """Give the interaction handlers running now (and any that start meanwhile) up to ``timeout_s`` to finish,
    then cancel the rest: none may touch the database after it closes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    current = asyncio.current_task()

    def running() -> list[asyncio.Task[Any]]:
        return [
            task
            for task in asyncio.all_tasks()
            if task is not current and not task.done() and task.get_name().startswith(_HANDLER_TASKS)
        ]

    while (tasks := running()) and (left := deadline - loop.time()) > 0:
        await asyncio.wait(tasks, timeout=left)
    if tasks:
        log.warning("stopping: %d interaction(s) still being handled are cut off", len(tasks))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
