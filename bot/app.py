"""Wiring: the database, one HTTP session per provider, the web server and the job service.

:class:`Core` is everything except who listens to jobs; the Discord bot (``bot.discord``) and the CLI each
bring their own listener. Start order: database, provider sessions, web server, job service (which resumes
unfinished jobs). Stop order is the reverse. Nothing here imports discord.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import aiohttp

from bot import __version__, logs
from bot.config import Secrets, Settings
from bot.errors import ConfigError, ProviderError
from bot.jobs.phase import JobListener
from bot.jobs.retention import Janitor
from bot.jobs.service import JobService
from bot.providers.base import Provider
from bot.providers.cog_server import CogClient, UploadStore
from bot.providers.elevenlabs import ElevenLabsClient
from bot.providers.replicate import ModelRef, ReplicateClient
from bot.storage.db import Database
from bot.storage.guild_repo import GuildRepo
from bot.storage.jobs_repo import JobsRepo
from bot.storage.plans_repo import PlansRepo
from bot.storage.state_repo import StateRepo
from bot.web.cog_server import CogRoutes
from bot.web.ops import OpsRoutes
from bot.web.server import WebServer, create_app
from bot.web.webhooks import ReplicateWebhookView, WebhookVerifier

log = logging.getLogger(__name__)

# When Encore stops, downloads and deliveries in flight get this long to finish, so that a whole stop fits in
# the 10 s `docker stop` waits before it kills; whatever is cut off resumes at the next start.
STOP_GRACE_S = 5.0
USER_AGENT = f"Encore/{__version__} (+https://github.com/encore-bot)"
# The sections /encore reload reads again; the others (connections, storage, Discord) need a restart.
RELOADABLE = ("limits", "safety", "jobs")


def require_secret(secret: Any, name: str) -> str:
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
            require_secret(self.secrets.replicate_api_token, "REPLICATE_API_TOKEN") if "replicate" in uses else None
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
