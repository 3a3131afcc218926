"""Running the bot: ``python -m bot run`` and ``sync-commands``, startup failures as one line, a clean stop."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import discord

from bot.app import Core
from bot.config import Secrets, Settings, require_secret
from bot.discord.client import EncoreBot
from bot.discord.shards import refused
from bot.errors import ConfigError, StartupError, cause

log = logging.getLogger(__name__)

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class GracefulStop:
    """SIGTERM (``docker stop``) and SIGINT (Ctrl-C) stop Encore cleanly instead of killing it.

    While the bot runs, a signal calls ``close`` (the job service stops taking work, downloads and deliveries
    in flight get their grace period, outcome writes are finished, then the gateway closes); before that, it
    unwinds the startup. Either way the process ends normally, and unfinished jobs resume at the next start.
    """

    def __init__(self) -> None:
        self.close: Callable[[], Coroutine[Any, Any, None]] | None = None  # set once there is a bot to close
        self.signal: signal.Signals | None = None
        self._task: asyncio.Task[Any] | None = None
        self._closing: asyncio.Task[None] | None = None

    async def __aenter__(self) -> GracefulStop:
        self._task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in _STOP_SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig)
        return self

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.signal is not None:
            log.info("%s received; already stopping", sig.name)
            return
        self.signal = sig
        log.info("%s received: stopping (unfinished jobs resume at the next start)", sig.name)
        if self.close is not None:
            self._closing = asyncio.create_task(self.close(), name="graceful-stop")
        elif self._task is not None:
            self._task.cancel()  # still starting up: unwind what has started

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        loop = asyncio.get_running_loop()
        for sig in _STOP_SIGNALS:
            loop.remove_signal_handler(sig)
        if self._closing is not None:
            await self._closing
        if exc_type is asyncio.CancelledError and self.signal is not None and self._task is not None:
            # Our own cancel from _on_signal (a cancel from anyone else leaves a count and goes on).
            return self._task.uncancel() == 0
        return False


async def _login(bot: EncoreBot, token: str) -> None:
    """Log in to Discord (and run setup_hook); what goes wrong becomes one line saying what to do."""
    try:
        await bot.login(token)
    except discord.LoginFailure:
        raise ConfigError(
            "Discord refused DISCORD_TOKEN (401 Unauthorized): copy the bot's token again from the developer "
            "portal (your application, Bot, Reset Token) into DISCORD_TOKEN"
        ) from None
    except (aiohttp.ClientConnectionError, TimeoutError) as exc:
        raise StartupError(
            f"can't reach Discord ({cause(exc)}): check this machine's network, DNS and proxy, then start again"
        ) from None
    except discord.HTTPException as exc:
        raise StartupError(
            f"Discord answered HTTP {exc.status} while Encore was starting ({str(exc.text)[:200]}); "
            "try again in a few minutes"
        ) from None


async def sync_commands_now(settings: Settings, secrets: Secrets, **client_options: Any) -> int:
    """``python -m bot sync-commands``: log in (no gateway, no jobs), sync the commands, remember them."""
    token = require_secret(secrets.discord_token, "DISCORD_TOKEN")
    core = Core(settings, secrets)
    await core.db.open()
    try:
        async with EncoreBot(core, sync_only=True, **client_options) as bot:
            await _login(bot, token)
            return await bot.sync_commands(force=True)
    finally:
        await core.db.close()


async def run_bot(
    settings: Settings, secrets: Secrets, *, config_path: Path | None = None, **client_options: Any
) -> None:
    """Run the Discord bot until it is closed or told to stop by SIGTERM or SIGINT.

    Startup problems raise a :class:`BotError` whose message says what to do (a refused token, no network,
    a damaged or locked database, a port in use, a shard Discord refuses).
    """
    token = require_secret(secrets.discord_token, "DISCORD_TOKEN")
    async with GracefulStop() as stop, Core(settings, secrets, config_path=config_path) as core:
        bot = EncoreBot(core, config_path=config_path, **client_options)
        async with bot:
            stop.close = bot.close
            await _login(bot, token)
            try:
                await bot.connect()
            except discord.ConnectionClosed as exc:
                error = refused(exc, settings.discord, bot.recommended_shards)
                if error is None:
                    raise
                raise error from None
    log.info("Encore stopped cleanly" + (f" ({stop.signal.name})" if stop.signal else ""))
