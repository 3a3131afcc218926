"""Wiring: the database, one HTTP session per provider, the web server and the job service.

:class:`Core` is everything except who listens to jobs; the Discord bot (``bot.discord``) and the CLI each
bring their own listener. Start order: database, provider sessions, web server, job service (which resumes
unfinished jobs). Stop order is the reverse. Nothing here imports discord.py.
"""

from __future__ import annotations

import logging

import aiohttp

from bot import __version__
from bot.config import Secrets, Settings, database_url
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
from bot.storage.loops_repo import LoopsRepo
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


class Core:
    def __init__(self, settings: Settings, secrets: Secrets, providers: Registry = registry.PROVIDERS) -> None:
        """``providers``: the provider registry (Encore's own, unless a test adds one); ``settings`` are its
        (``providers.load_settings``)."""
        self.settings = settings
        self.secrets = secrets
        self.registry = providers
        # SQLite in [storage] dir, or PostgreSQL at [storage] url / ENCORE_DATABASE_URL (bot/storage/backend.py).
        self.db = database_for(settings.storage, database_url(settings.storage.url, secrets.database_url))
        self.repo = JobsRepo(self.db)
        self.plans = PlansRepo(self.db)
        self.guilds = GuildRepo(self.db)
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

    async def open(self) -> None:
        # Each provider the settings use checks them and builds itself (ConfigError before anything opens).
        self.providers = self.registry.build(self.settings, self.secrets, self._session, self._rate_limit)
        try:
            await self.db.open()
        except BaseException:
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
