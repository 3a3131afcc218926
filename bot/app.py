"""Wiring: the database, one HTTP session per provider, the web server and the job service.

:class:`Core` is everything except who listens to jobs; the Discord bot and the CLI each bring
their own listener. Start order: database, provider sessions, web server, job service (which resumes
unfinished jobs). Stop order is the reverse.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import signal
import time
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands

from bot import __version__, logs
from bot.config import Secrets, Settings
from bot.errors import BotError, ConfigError, ProviderError, StartupError, StorageError, cause
from bot.jobs.limits import LimitError
from bot.jobs.phase import JobListener
from bot.jobs.retention import Janitor
from bot.jobs.service import JobService
from bot.providers.base import Provider
from bot.providers.cog import CogClient, UploadStore
from bot.providers.elevenlabs import ElevenLabsClient
from bot.providers.replicate import ModelRef, ReplicateClient
from bot.storage.db import Database
from bot.storage.guild_repo import GuildRepo
from bot.storage.jobs_repo import JobsRepo
from bot.storage.plans_repo import PlansRepo
from bot.storage.state_repo import StateRepo
from bot.text import quoted
from bot.web.cog import CogRoutes
from bot.web.ops import OpsRoutes
from bot.web.server import WebServer, create_app
from bot.web.webhooks import ReplicateWebhookView, WebhookVerifier

log = logging.getLogger(__name__)

# When Encore stops, downloads and deliveries in flight get this long to finish, so that a whole stop fits in
# the 10 s `docker stop` waits before it kills; whatever is cut off resumes at the next start.
STOP_GRACE_S = 5.0
HANDLER_GRACE_S = 3.0  # commands and clicks being handled, before that
USER_AGENT = f"Encore/{__version__} (+https://github.com/encore-bot)"
EXTENSIONS = ("cogs.music", "cogs.audio_in", "cogs.plans", "cogs.admin")
# The sections /encore reload reads again; the others (connections, storage, Discord) need a restart.
RELOADABLE = ("limits", "safety", "jobs")


def _require(secret: Any, name: str) -> str:
    if secret is None:
        raise ConfigError(f"{name} is not set. Put it in the environment (it is never read from the config file).")
    return str(secret.get_secret_value())


class Core:
    def __init__(self, settings: Settings, secrets: Secrets) -> None:
        self.settings = settings
        self.secrets = secrets
        self.db = Database(
            settings.storage.database_path,
            busy_timeout_ms=settings.storage.busy_timeout_ms,
            integrity_check_s=settings.storage.integrity_check_s,
        )
        self.repo = JobsRepo(self.db)
        self.plans = PlansRepo(self.db)
        self.guilds = GuildRepo(self.db)
        self.state = StateRepo(self.db)
        self._sessions: list[aiohttp.ClientSession] = []
        self.providers: dict[str, Provider] = {}
        self.replicate: ReplicateClient | None = None
        self.web: WebServer | None = None
        self.service: JobService | None = None
        self.cog_uploads: UploadStore | None = None
        self.elevenlabs: ElevenLabsClient | None = None
        self.janitor: Janitor | None = None
        self.attachments: aiohttp.ClientSession | None = None  # people's files, from Discord's CDN

    async def open(self) -> None:
        routes = dict(self.settings.models)
        uses = {route.provider for route in routes.values()}
        for name, route in routes.items():
            if route.provider == "replicate":
                try:
                    ModelRef.parse(route.ref)
                except ValueError as exc:
                    raise ConfigError(f"invalid configuration: [models.{name}] ref: {exc}") from None
        if self.settings.stems.provider == "replicate":
            try:
                ref = ModelRef.parse(self.settings.stems.demucs_ref)
            except ValueError as exc:
                raise ConfigError(f"invalid configuration: [stems] demucs_ref: {exc}") from None
            if ref.version is not None and set(ref.version) == {"0"}:
                raise ConfigError(
                    "invalid configuration: [stems] demucs_ref: set a pinned version id of the demucs model "
                    '(replicate.com/ryan5453/demucs, Versions tab), or use [stems] provider = "elevenlabs"'
                )
            uses.add("replicate")
        if "cog" in uses:
            cog_models = ", ".join(name for name, route in routes.items() if route.provider == "cog")
            if self.settings.cog.base_url is None:
                raise ConfigError(
                    f"invalid configuration: {cog_models} run on a Cog server, but [cog] base_url is not set "
                    "(ENCORE_COG__BASE_URL)"
                )
            if self.settings.webhooks.public_url is None:
                raise ConfigError(
                    f"invalid configuration: {cog_models} run on a Cog server, which can only report back by "
                    "webhook: set [webhooks] public_url (ENCORE_WEBHOOKS__PUBLIC_URL) to a URL it can reach"
                )
        replicate_token = (
            _require(self.secrets.replicate_api_token, "REPLICATE_API_TOKEN") if "replicate" in uses else None
        )
        await self.db.open()
        if replicate_token is not None:
            cfg = self.settings.replicate
            session = self._session(connect_s=cfg.connect_timeout_s, read_s=cfg.read_timeout_s)
            self.replicate = ReplicateClient(
                session,
                api_base=str(cfg.api_base),
                token=replicate_token,
                max_retries=cfg.max_retries,
                retry_base_s=cfg.retry_base_s,
                prediction_deadline_s=cfg.prediction_deadline_s,
                delivery_hosts=tuple(cfg.delivery_hosts),
                download_timeout_s=self.settings.storage.download_timeout_s,
                creates_per_minute=cfg.creates_per_minute,
                requests_per_minute=cfg.requests_per_minute,
            )
            self.providers["replicate"] = self.replicate
        if "cog" in uses:
            self._open_cog()
        if self.secrets.elevenlabs_api_key is not None:
            cfg11 = self.settings.elevenlabs
            session = self._session(connect_s=cfg11.connect_timeout_s, read_s=cfg11.read_timeout_s)
            self.elevenlabs = ElevenLabsClient(
                session,
                api_base=str(cfg11.api_base),
                api_key=self.secrets.elevenlabs_api_key.get_secret_value(),
                max_retries=cfg11.max_retries,
                retry_base_s=cfg11.retry_base_s,
                total_timeout_s=cfg11.total_timeout_s,
            )
        elif "elevenlabs" in uses:
            log.info("ELEVENLABS_API_KEY is not set: /music song, plans and ElevenLabs stems are off")
        audio = self.settings.audio
        self.attachments = self._session(connect_s=min(10.0, audio.download_timeout_s), read_s=audio.download_timeout_s)

    def _open_cog(self) -> None:
        cfg = self.settings.cog
        assert cfg.base_url is not None
        assert self.settings.webhooks.public_url is not None
        public = str(self.settings.webhooks.public_url).rstrip("/")
        secret = cfg.upload_secret.get_secret_value() if cfg.upload_secret else None
        self.cog_uploads = (
            UploadStore(self.settings.storage.dir / "uploads", public_prefix=f"{public}/cog/uploads/{secret}/")
            if secret
            else None
        )
        if self.cog_uploads is None:
            log.warning(
                "ENCORE_COG__UPLOAD_SECRET is not set: the Cog server cannot hand output files back, "
                "so its jobs will fail. See the README on --upload-url."
            )
        # Cog runs hold no connection open (async predictions), so ordinary timeouts apply.
        session = self._session(connect_s=cfg.connect_timeout_s, read_s=cfg.read_timeout_s)
        self.providers["cog"] = CogClient(
            session, base_url=str(cfg.base_url), uploads=self.cog_uploads, lost_after_s=cfg.lost_after_s
        )

    def _session(self, *, connect_s: float, read_s: float) -> aiohttp.ClientSession:
        timeout = aiohttp.ClientTimeout(total=None, connect=connect_s, sock_connect=connect_s, sock_read=read_s)
        session = aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": USER_AGENT})
        self._sessions.append(session)
        return session

    async def _webhook_secret(self) -> str | None:
        if self.secrets.replicate_webhook_secret is not None:
            return self.secrets.replicate_webhook_secret.get_secret_value()
        if self.replicate is None:
            return None
        try:
            secret = await self.replicate.webhook_secret()
        except ProviderError as exc:
            log.error("could not fetch the Replicate webhook secret (%s); falling back to polling only", exc)
            return None
        logs.register_secret("REPLICATE_WEBHOOK_SECRET", secret)
        return secret

    def _ops(self, gateway_ok: Callable[[], bool] | None) -> OpsRoutes:
        async def oldest_active() -> float | None:
            job = await self.repo.oldest_active()
            return job.created_at if job else None

        return OpsRoutes(
            ping_db=self.db.ping,
            db_corrupt=lambda: self.db.corruption is not None,
            job_counts=self.repo.counts_by_model_and_status,
            oldest_active=oldest_active,
            providers={
                "replicate": "replicate" in self.providers,
                "cog": "cog" in self.providers,
                "elevenlabs": self.elevenlabs is not None,
            },
            gateway_ok=gateway_ok,
        )

    async def start_service(
        self,
        listener: JobListener,
        *,
        resume: bool = True,
        serve_web: bool = False,
        gateway_ok: Callable[[], bool] | None = None,
    ) -> JobService:
        """Start the web server and the job service.

        The web server (webhooks, Cog uploads, ``/healthz``, ``/metrics``) runs when ``serve_web`` is set
        (the bot) or when providers need to reach us (webhooks or Cog configured). ``gateway_ok`` tells
        ``/healthz`` whether the Discord gateway is connected. ``resume=False`` leaves other unfinished
        jobs alone (the CLI shares the bot's database).
        """
        hooks = self.settings.webhooks
        public = str(hooks.public_url).rstrip("/") if hooks.public_url is not None else None
        webhook_url: str | None = None
        verifier: WebhookVerifier | None = None
        if public is not None and "replicate" in self.providers:
            secret = await self._webhook_secret()
            if secret:
                verifier = WebhookVerifier(secret)
                webhook_url = public + hooks.path
        uses_cog = "cog" in self.providers
        service = JobService(
            repo=self.repo,
            providers=self.providers,
            settings=self.settings,
            listener=listener,
            webhook_url=webhook_url,
            cog_webhook_base=f"{public}/cog/webhooks" if uses_cog and public else None,
            elevenlabs=self.elevenlabs,
            plans=self.plans,
            guilds=self.guilds,
            state=self.state,
        )
        self.service = service
        if serve_web or verifier is not None or uses_cog:
            cog_routes = None
            if uses_cog:
                secret = self.settings.cog.upload_secret
                cog_routes = CogRoutes(
                    on_webhook=service.accept_cog_webhook,
                    expects_upload=service.expects_upload,
                    uploads=self.cog_uploads,
                    upload_secret=secret.get_secret_value() if secret else None,
                    max_upload_bytes=self.settings.storage.max_output_bytes,
                    max_uploads_per_prediction=self.settings.cog.max_uploads_per_prediction,
                )
            app = create_app(
                webhook_path=hooks.path,
                replicate_webhook=ReplicateWebhookView(verifier, service.accept_webhook) if verifier else None,
                max_body_bytes=hooks.max_body_bytes,
                cog=cog_routes,
                ops=self._ops(gateway_ok),
                body_timeout_s=hooks.body_timeout_s,
            )
            server = WebServer(app, host=hooks.host, port=hooks.port, header_timeout_s=hooks.header_timeout_s)
            await server.start()
            self.web = server
        await service.start(resume=resume)
        if resume:  # the bot, not a CLI run sharing its database
            self.janitor = Janitor(
                self.repo,
                self.settings.storage,
                uploads_dir=self.cog_uploads.root if self.cog_uploads else None,
                expects_upload=service.expects_upload,
            )
            self.janitor.start()
        log.info("job service started (%s)", "webhooks + polling" if webhook_url or uses_cog else "polling only")
        return service

    def reload(self, fresh: Settings) -> Settings:
        """Take the reloadable sections of ``fresh`` (:data:`RELOADABLE`) everywhere they are used: here, in the
        job service, its scheduler (caps per provider) and its poller (intervals). Returns the settings now in use.
        """
        self.settings = self.settings.model_copy(update={name: getattr(fresh, name) for name in RELOADABLE})
        if self.service is not None:
            self.service.apply_settings(self.settings)
        return self.settings

    async def stop_service(self, *, grace_s: float = STOP_GRACE_S) -> None:
        """Stop taking webhooks and jobs, giving downloads and deliveries in flight ``grace_s`` to finish;
        unfinished jobs resume at the next start. Idempotent."""
        if self.janitor is not None:
            janitor, self.janitor = self.janitor, None
            await janitor.stop()
        if self.web is not None:
            web, self.web = self.web, None
            await web.stop()
        if self.service is not None:
            await self.service.stop(grace_s=grace_s)

    async def close(self) -> None:
        await self.stop_service()
        for session in self._sessions:
            await session.close()
        await self.db.close()

    async def __aenter__(self) -> Core:
        try:
            await self.open()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


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


class EncoreTree(app_commands.CommandTree["EncoreBot"]):
    """One handler for every command's errors: a known error is one ephemeral line; others get an apology."""

    async def on_error(self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError) -> None:
        cause: BaseException = error
        if isinstance(error, app_commands.CommandInvokeError):
            cause = error.original
        if isinstance(cause, BotError):
            message = discord_text(cause)
        elif isinstance(cause, app_commands.CheckFailure):
            message = getattr(cause, "user_message", None) or "You can't use that command here."
        elif isinstance(cause, app_commands.TransformerError):
            message = f"I couldn't understand {quoted(str(cause.value))} there."
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
            message = f"Sorry, something went wrong on my side (reference `{reference}`)."
        try:
            await reply_privately(interaction, message)
        except discord.HTTPException as exc:
            log.warning("could not report an error to user %s: %s", interaction.user.id, exc)


def commands_digest(tree: app_commands.CommandTree[Any], guild: discord.abc.Snowflake | None) -> str:
    """A hash of exactly what ``tree.sync(guild=guild)`` would send to Discord."""
    payload = [command.to_dict(tree) for command in tree.get_commands(guild=guild)]
    payload.sort(key=lambda command: (command.get("type", 1), command["name"]))
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


class EncoreBot(commands.Bot):
    """The Discord client. The core is built outside and passed in (discord.py's advanced startup).

    ``sync_only``: log in, load the commands and sync them, nothing else (``python -m bot sync-commands``).
    """

    def __init__(self, core: Core, *, config_path: Path | None = None, sync_only: bool = False, **options: Any) -> None:
        intents = discord.Intents.default()
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            help_command=None,
            tree_cls=EncoreTree,
            **options,
        )
        self.core = core
        self.config_path = config_path  # what /encore reload reads again
        self.sync_only = sync_only
        # Set in setup_hook, once the client can talk to Discord.
        self.delivery: Any = None

    @property
    def settings(self) -> Settings:
        """The settings in use (``/encore reload`` replaces some sections)."""
        return self.core.settings

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
        from bot.discord.delivery import DiscordDelivery

        self.delivery = DiscordDelivery(self, self.settings, service=lambda: self.service)
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        if self.sync_only:
            return
        await self.core.start_service(self.delivery, serve_web=True, gateway_ok=self.gateway_connected)
        if self.settings.discord.sync_commands:
            await self.sync_commands(force=False)

    def gateway_connected(self) -> bool:
        """Whether the Discord gateway is up: ready, not closed, and its websocket open (not reconnecting)."""
        ws = self.ws
        return self.is_ready() and not self.is_closed() and ws is not None and ws.open

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
    token = _require(secrets.discord_token, "DISCORD_TOKEN")
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
    a damaged or locked database, a port in use).
    """
    token = _require(secrets.discord_token, "DISCORD_TOKEN")
    async with GracefulStop() as stop, Core(settings, secrets) as core:
        bot = EncoreBot(core, config_path=config_path, **client_options)
        async with bot:
            stop.close = bot.close
            await _login(bot, token)
            await bot.connect()
    log.info("Encore stopped cleanly" + (f" ({stop.signal.name})" if stop.signal else ""))
