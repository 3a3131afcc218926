"""Wiring: the database, one HTTP session per provider, the web server and the job service.

:class:`Core` is everything except who listens to jobs; the Discord bot (``bot.discord``) and the CLI each
bring their own listener. Start order: database, notices between processes, provider sessions, web server, job
service (which resumes unfinished jobs). Stop order is the reverse. Nothing here imports discord.py.

Several processes may share one PostgreSQL database: the notifier (``bot.storage.notify``) tells each of them
what another changed (a pause, a server's settings, a reload: :meth:`Core.announce_reload`), and the job service's
leases decide which process does what to a job.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from bot import __version__
from bot.config import Secrets, Settings, database_url
from bot.errors import ConfigError, StorageError
from bot.jobs.leases import new_holder
from bot.jobs.phase import JobListener
from bot.jobs.retention import Janitor
from bot.jobs.service import JobService
from bot.providers import registry
from bot.providers.base import WebhookRoute
from bot.providers.plugins import Providers, Registry
from bot.providers.ratelimit import Limiter, RateLimit, SharedOrLocal
from bot.storage.databases import database_for
from bot.storage.guild_repo import GuildRepo
from bot.storage.instances_repo import InstancesRepo
from bot.storage.jobs_repo import JobsRepo
from bot.storage.leases_repo import LeasesRepo
from bot.storage.loops_repo import LoopsRepo
from bot.storage.notify import Notice, notifier_for
from bot.storage.plans_repo import PlansRepo
from bot.storage.prefs_repo import PreferencesRepo
from bot.storage.queue_repo import QueueRepo
from bot.storage.rate_limits import SharedRateLimit
from bot.storage.state_repo import StateRepo
from bot.storage.stats_repo import StatsRepo
from bot.storage.voice_repo import VoiceRepo
from bot.web import routes
from bot.web.ops import GatewayShards, OpsRoutes
from bot.web.server import WebServer, create_app

log = logging.getLogger(__name__)

# When Encore stops, downloads and deliveries in flight get this long to finish, so that a whole stop fits in
# the 10 s `docker stop` waits before it kills; whatever is cut off resumes at the next start.
STOP_GRACE_S = 5.0
USER_AGENT = f"Encore/{__version__} (+https://github.com/encore-bot)"
# The sections /encore reload reads again; the others (connections, storage, Discord) need a restart.
RELOADABLE = ("limits", "safety", "jobs")
RELOAD_CHANNEL = "reload"  # notices: a process reloaded its config (/encore reload)
_RELOAD_KEY = "config_reloaded"  # in bot_state: the last reload (when, by whom, in which process)


class Core:
    def __init__(
        self,
        settings: Settings,
        secrets: Secrets,
        providers: Registry = registry.PROVIDERS,
        *,
        config_path: Path | None = None,
    ) -> None:
        """``providers``: the provider registry (Encore's own, unless a test adds one); ``settings`` are its
        (``providers.load_settings``); ``config_path``: the config file, read again when another process reloads
        its own."""
        self.settings = settings
        self.secrets = secrets
        self.registry = providers
        self.config_path = config_path
        self.process_id = new_holder("process")[len("process:") :]  # host, process id, a random part
        # SQLite in [storage] dir, or PostgreSQL at [storage] url / ENCORE_DATABASE_URL (bot/storage/backend.py).
        self.db = database_for(
            settings.storage,
            database_url(settings.storage.url, secrets.database_url),
            name=f"encore {self.process_id}",  # pg_stat_activity shows which process holds a connection
        )
        # Notices between the processes sharing the database (in this process only on SQLite).
        self.notifier = notifier_for(self.db, self.process_id, recheck_s=settings.storage.recheck_s)
        self.repo = JobsRepo(self.db)
        self.leases = LeasesRepo(self.db)
        self.plans = PlansRepo(self.db)
        self.guilds = GuildRepo(self.db, self.notifier)
        self.preferences = PreferencesRepo(self.db)
        self.state = StateRepo(self.db)
        self.stats = StatsRepo(self.db)
        self.voice = VoiceRepo(self.db)  # voice messages posted of tracks (bot.discord.voice)
        self.loops = LoopsRepo(self.db)
        self.queue = QueueRepo(self.db)  # the fair scheduler's queue, shared by every process on the database
        self.instances = InstancesRepo(self.db)
        self._sessions: list[aiohttp.ClientSession] = []
        self.providers = Providers({}, providers)  # built in open(), from the settings (bot/providers/registry.py)
        self.web: WebServer | None = None
        self.service: JobService | None = None
        self.janitor: Janitor | None = None
        self.attachments: aiohttp.ClientSession | None = None  # people's files, from Discord's CDN
        # What applies a reloaded config (the Discord client sets its own, which reaches card delivery too).
        self.on_reload: Callable[[Settings], object] = self.reload
        self._reload_seen: str | None = None
        self.notifier.subscribe(RELOAD_CHANNEL, self._heard_reload)

    async def open(self) -> None:
        # Each provider the settings use checks them and builds itself (ConfigError before anything opens).
        self.providers = self.registry.build(self.settings, self.secrets, self._session, self._rate_limit)
        try:
            await self.db.open()
            self._reload_seen = await self.state.get(_RELOAD_KEY)
            await self.notifier.start()
        except BaseException:
            await self.notifier.stop()
            await self._close_sessions()
            raise
        audio = self.settings.audio
        self.attachments = self._session(connect_s=min(10.0, audio.download_timeout_s), read_s=audio.download_timeout_s)

    def _rate_limit(self, key: str, per_minute: int, burst: int) -> Limiter:
        """A provider's rate limit: kept in the database when several processes may share it (a provider's limits
        are per account), else this process's own."""
        local = RateLimit(per_minute, burst=burst)
        if not self.db.shared:
            return local
        return SharedOrLocal(SharedRateLimit(self.db, key, per_minute, burst=burst), local, what=key)

    def _session(self, *, connect_s: float, read_s: float) -> aiohttp.ClientSession:
        timeout = aiohttp.ClientTimeout(total=None, connect=connect_s, sock_connect=connect_s, sock_read=read_s)
        session = aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": USER_AGENT})
        self._sessions.append(session)
        return session

    def _ops(self, gateway: GatewayShards | None) -> OpsRoutes:
        async def oldest_active() -> float | None:
            job = await self.stats.oldest_active()
            return job.created_at if job else None

        return OpsRoutes(
            ping_db=self.db.ping,
            db_corrupt=lambda: self.db.corruption is not None,
            job_counts=self.stats.counts_by_model_and_status,
            oldest_active=oldest_active,
            providers=self.providers.configured(),
            gateway=gateway,
        )

    async def start_service(
        self,
        listener: JobListener,
        *,
        resume: bool = True,
        serve_web: bool = False,
        gateway: GatewayShards | None = None,
    ) -> JobService:
        """Start the web server and the job service.

        The web server (the providers' webhooks and uploads, ``/healthz``, ``/metrics``) runs when ``serve_web``
        is set (the bot) or when providers need to reach us (signed or per-job webhooks). ``gateway`` tells
        ``/healthz`` which of this process's Discord gateway shards are connected. ``resume=False`` leaves
        other unfinished jobs alone (the CLI shares the bot's database).
        """
        hooks = self.settings.webhooks
        public = str(hooks.public_url).rstrip("/") if hooks.public_url is not None else None
        # The providers' webhooks are mounted from their declarations; signed ones only with their secret.
        signed = await routes.signed_routes(self.providers, self.settings) if public is not None else {}
        per_job = bool(self.providers.with_webhook(WebhookRoute.PER_JOB))
        service = JobService(
            repo=self.repo,
            providers=self.providers,
            settings=self.settings,
            listener=listener,
            signed_webhooks={name: f"{public}{route.path}" for name, route in signed.items()},
            plans=self.plans,
            guilds=self.guilds,
            preferences=self.preferences,
            state=self.state,
            attachments=self.attachments,
            loops=self.loops,
            queue=self.queue,
            instances=self.instances,
            leases=self.leases,
            holder=f"{'bot' if resume else 'cli'}:{self.process_id}",
            notifier=self.notifier,
            sole_process=self.db.dialect.name == "sqlite",
        )
        self.service = service
        if serve_web or signed or per_job:
            app = create_app(
                max_body_bytes=hooks.max_body_bytes, ops=self._ops(gateway), body_timeout_s=hooks.body_timeout_s
            )
            handlers = routes.Handlers(
                signed=service.accept_webhook,
                per_job=service.accept_job_webhook,
                expects_upload=service.expects_upload,
            )
            routes.mount(app, self.providers, signed, handlers, max_upload_bytes=self.settings.storage.max_output_bytes)
            server = WebServer(app, host=hooks.host, port=hooks.port, header_timeout_s=hooks.header_timeout_s)
            await server.start()
            self.web = server
        await service.start(resume=resume)
        if resume:  # the bot, not a CLI run sharing its database
            self.janitor = Janitor(
                self.repo,
                self.settings.storage,
                uploads_dirs=[store.root for store in self.providers.upload_targets().values() if store is not None],
                expects_upload=service.expects_upload,
            )
            self.janitor.start()
        log.info("job service started (%s)", "webhooks + polling" if signed or per_job else "polling only")
        return service

    def reload(self, fresh: Settings) -> Settings:
        """Take the reloadable sections of ``fresh`` (:data:`RELOADABLE`) everywhere they are used: here, in the
        job service, its scheduler (caps per provider) and its poller (intervals). Returns the settings now in use.
        """
        self.settings = self.settings.model_copy(update={name: getattr(fresh, name) for name in RELOADABLE})
        if self.service is not None:
            self.service.apply_settings(self.settings)
        return self.settings

    async def announce_reload(self, *, by: int) -> None:
        """``/encore reload`` was done in this process: the others read their config again (the reload is
        stored, so one that missed the notice catches up at its next check)."""
        stamp = json.dumps({"at": time.time(), "by": by, "process": self.process_id})
        try:
            await self.state.put(_RELOAD_KEY, stamp, now=time.time())
            self._reload_seen = stamp
            await self.notifier.publish(RELOAD_CHANNEL)
        except StorageError as exc:
            log.warning("the other processes won't hear of this reload: %s", exc)

    async def _heard_reload(self, notice: Notice) -> None:
        """Another process reloaded its config (or notices may have been lost): read this one's again."""
        del notice
        stamp = await self.state.get(_RELOAD_KEY)
        if stamp is None or stamp == self._reload_seen:
            return
        self._reload_seen = stamp
        try:
            fresh = await asyncio.to_thread(self.registry.load_settings, self.config_path)
        except ConfigError as exc:
            log.error(
                "another process reloaded its config, but this one's doesn't load (%s): keeping it as it was", exc
            )
            return
        self.on_reload(fresh)
        log.warning("config reloaded, as another process did (limits, safety and job rules)")

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
        await self.notifier.stop()
        await self._close_sessions()
        await self.db.close()

    async def _close_sessions(self) -> None:
        sessions, self._sessions = self._sessions, []
        for session in sessions:
            await session.close()

    async def __aenter__(self) -> Core:
        try:
            await self.open()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
