"""A self-hosted Cog model server (the open-source container Replicate models run in).

Differences from Replicate that shape this client (see the Cog contract, tests/specs/cog.md):
- no auth, no ``/v1``, one model per server; predictions are created with an idempotent
  ``PUT /predictions/{id}`` whose id we choose, asynchronously (``Prefer: respond-async``);
- the server runs ``max_concurrency`` predictions at once and answers 409 beyond that, and while its
  setup runs: those are "busy, try again later", never a failure;
- there is no GET of a prediction: results arrive only by webhook (unsigned, so each job's webhook
  URL carries an unguessable token), and files arrive through an upload target Encore serves
  (``--upload-url``); as a safety net, an idle server that never reported a job means it was lost.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from yarl import URL

from bot import metrics
from bot.audio.download import data_url, guess_content_type, save_data_url
from bot.config import Section, Settings
from bot.errors import (
    NO_UPLOAD_TARGET,
    ConfigError,
    OutputError,
    PredictionLostError,
    ProviderBusyError,
    ProviderError,
    ProviderInputError,
    ProviderUnavailableError,
    SubmissionUncertainError,
    cause,
)
from bot.providers.base import (
    BuildContext,
    Costed,
    DownloadedFile,
    OnRestart,
    Prediction,
    PredictionStatus,
    ProviderProtocol,
    ProviderRoute,
    ProviderSpec,
    WebhookRoute,
    uploads_path,
)
from bot.providers.uploads import UploadStore

if TYPE_CHECKING:
    from collections.abc import Sequence

    from bot.config import LimitsSettings

log = logging.getLogger(__name__)

_BUSY = "The self-hosted model server is busy. Your job is waiting its turn."
_LOST = "The self-hosted model server lost this job."


class _Health(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: str


class CogSettings(Section):
    """``[cog]``: a self-hosted Cog model server (the container Replicate models run in)."""

    # e.g. "http://gpu-box:5000"; empty: no cog provider.
    base_url: AnyHttpUrl | None = None
    connect_timeout_s: float = Field(default=5.0, gt=0, le=120)
    read_timeout_s: float = Field(default=30.0, gt=0, le=600)
    # Predictions the server runs at once (cog.yaml concurrency.max); more wait in Encore's queue.
    max_concurrency: int = Field(default=1, ge=1, le=64)
    # How often to ask a busy or starting server again.
    retry_s: float = Field(default=5.0, gt=0, le=600)
    # With no webhook, a job is considered lost this long after the server went idle without reporting it.
    lost_after_s: float = Field(default=360.0, gt=0, le=86_400)
    # Secret path segment of the upload target Cog PUTs output files to. Environment only
    # (ENCORE_COG__UPLOAD_SECRET), never in the file; at least 16 characters.
    upload_secret: SecretStr | None = Field(default=None, min_length=16)
    # Output files one prediction may upload; more are refused (a model's outputs: audio, maybe an image).
    max_uploads_per_prediction: int = Field(default=8, ge=1, le=256)

    @field_validator("base_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value


def _status_kind(status: int) -> str:
    """The metrics' error kind for an HTTP status Cog answered with."""
    kinds = {401: "auth", 403: "auth", 404: "not_found", 409: "busy", 422: "input", 429: "rate_limited"}
    return kinds.get(status, "unavailable" if status >= 500 else "error")


def _parse(data: Any, prediction_id: str) -> Prediction:
    """Cog's prediction object (no ``id`` unless given, no ``aborted``) as ours."""
    if not isinstance(data, dict):
        raise ProviderUnavailableError(detail="Cog sent a malformed prediction")
    data = {key: value for key, value in data.items() if value is not None}
    data["id"] = data.get("id") or prediction_id
    data.setdefault("status", PredictionStatus.PROCESSING.value)
    try:
        return Prediction.model_validate(data)
    except ValidationError:
        raise ProviderUnavailableError(detail="Cog sent a malformed prediction") from None


def _settings(settings: Settings) -> CogSettings:
    return settings.section("cog", CogSettings)


class CogClient:
    """A client of one Cog server; ``name`` is the provider it serves as (``cog``, or another provider that
    runs its models on a Cog server of its own)."""

    # Cog has no GET: the poller only checks, after ``poll_grace_s``, whether an idle server lost the job.
    supports_get: bool = False

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        uploads: UploadStore | None,
        lost_after_s: float = 360.0,
        retry_s: float = 5.0,
        name: str = "cog",
    ) -> None:
        self.name = name
        self._session = session
        self._retry_s = retry_s  # how long a busy or starting server is left before it is asked again
        self._base = URL(base_url.rstrip("/"))
        self.uploads = uploads
        self.poll_grace_s: float | None = lost_after_s

    @classmethod
    def from_settings(cls, context: BuildContext, routes: Sequence[ProviderRoute]) -> CogClient | None:
        """The client for ``[cog]``, with the upload target it hands files back through; None when no model
        runs on a Cog server. (:func:`check_settings` has made sure base_url and a public URL are set.)"""
        if not routes:
            return None
        settings = context.settings
        cfg = _settings(settings)
        assert cfg.base_url is not None
        assert settings.webhooks.public_url is not None
        uploads = upload_store(
            settings,
            PROVIDER.name,
            cfg.upload_secret,
            root=settings.storage.uploads_dir,  # under [storage] files_dir: every process reads what lands
            max_files=cfg.max_uploads_per_prediction,
        )
        if uploads is None:
            log.warning(
                "ENCORE_COG__UPLOAD_SECRET is not set: the Cog server cannot hand output files back, "
                "so its jobs will fail. See the README on --upload-url."
            )
        # Cog runs hold no connection open (async predictions), so ordinary timeouts apply.
        session = context.session(connect_s=cfg.connect_timeout_s, read_s=cfg.read_timeout_s)
        return cls(
            session,
            base_url=str(cfg.base_url),
            uploads=uploads,
            lost_after_s=cfg.lost_after_s,
            retry_s=cfg.retry_s,
            name=PROVIDER.name,
        )

    async def _json(
        self, method: str, path: str, *, operation: str, ok: tuple[int, ...] = (200,), **kwargs: Any
    ) -> tuple[int, Any]:
        """One exchange: the status and the JSON body (None if it has none). Counted in the metrics as
        ``operation``; a status outside ``ok`` is counted as an error of its kind."""
        with metrics.provider_call(self.name, operation) as call:
            async with self._session.request(
                method, self._base.with_path(path), allow_redirects=False, **kwargs
            ) as resp:
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    body = None
            if resp.status not in ok:
                call.fail(_status_kind(resp.status))
            return resp.status, body

    async def health(self) -> str:
        try:
            status, body = await self._json("GET", "/health-check", operation="health")
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise ProviderUnavailableError(detail=f"Cog unreachable: {cause(exc)}") from None
        if status != 200:
            raise ProviderUnavailableError(detail=f"Cog health-check answered {status}")
        try:
            return _Health.model_validate(body).status
        except ValidationError:
            raise ProviderUnavailableError(detail="Cog sent a malformed health-check") from None

    async def submit(
        self,
        model_ref: str,
        input: dict[str, Any],
        *,
        webhook_url: str | None = None,
        prediction_id: str | None = None,
    ) -> Prediction:
        if prediction_id is None or not UploadStore.valid_name(prediction_id):
            raise ProviderError(detail="cog predictions need a safe id")
        if webhook_url is None:
            raise ProviderError(detail="cog predictions need a webhook")
        state = await self.health()
        if state in ("STARTING", "BUSY"):
            raise ProviderBusyError(_BUSY, detail=f"server {state}", retry_after_s=self._retry_s)
        if state != "READY":
            raise ProviderUnavailableError(
                "The self-hosted model server isn't working right now.", detail=f"server {state}"
            )
        body = {
            "id": prediction_id,
            "input": input,
            "webhook": webhook_url,
            "webhook_events_filter": ["start", "logs", "completed"],  # logs: the model's progress bar
        }
        try:
            status, data = await self._json(
                "PUT",
                f"/predictions/{prediction_id}",
                operation="create",
                ok=(200, 201, 202),
                json=body,
                headers={"Prefer": "respond-async"},
            )
        except aiohttp.ClientConnectorError as exc:
            raise ProviderUnavailableError(detail=f"Cog unreachable: {cause(exc)}") from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            # PUT is idempotent by id: trying the same id again is safe while it runs.
            raise SubmissionUncertainError(detail=f"create interrupted: {type(exc).__name__}") from None
        if status == 409:
            raise ProviderBusyError(_BUSY, detail="409 busy", retry_after_s=self._retry_s)
        if status == 422:
            fields = sorted(
                {str(e.get("loc", ["", "", ""])[-1]) for e in (data or {}).get("detail", []) if isinstance(e, dict)}
            )
            message = "The self-hosted model refused those settings"
            raise ProviderInputError(message + (f" ({', '.join(fields)})." if fields else "."), detail=str(data))
        if status not in (200, 201, 202):
            raise ProviderUnavailableError(detail=f"Cog answered {status}")
        return _parse(data, prediction_id)

    async def get(self, prediction_id: str) -> Prediction:
        """No GET on Cog: a busy server may be running it; an idle one has lost it."""
        state = await self.health()
        if state in ("BUSY", "STARTING"):
            return Prediction(id=prediction_id, status=PredictionStatus.PROCESSING)
        raise PredictionLostError(_LOST, detail=f"server {state} and no word of {prediction_id}")

    async def cancel(self, prediction_id: str) -> Prediction | None:
        try:
            status, _ = await self._json(
                "POST", f"/predictions/{prediction_id}/cancel", operation="cancel", ok=(200, 404)
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise ProviderUnavailableError(detail=f"Cog unreachable: {cause(exc)}") from None
        if status not in (200, 404):  # 404: not running (finished already)
            raise ProviderUnavailableError(detail=f"Cog cancel answered {status}")
        return None

    async def find_submitted(
        self, model_ref: str, input: dict[str, Any], *, created_after: datetime
    ) -> Prediction | None:
        return None  # Cog keeps no list; a repeated PUT with the same id is idempotent anyway

    async def upload(self, path: Path) -> str:
        """Inputs go to Cog inline: it downloads ``data:`` URLs itself, and keeps nothing."""
        return await data_url(path, content_type=guess_content_type(path.name))

    async def download(self, url: str, dest: Path, *, max_bytes: int) -> DownloadedFile:
        """Take an output: a file Cog uploaded to us, or an inline data URL. A bare path is a setup error."""
        if url.startswith("data:"):
            return await save_data_url(url, dest, max_bytes=max_bytes)
        local = self.uploads.local_path(url) if self.uploads is not None else None
        if local is None:
            raise OutputError(NO_UPLOAD_TARGET, detail=f"cog output is not an upload to us: {url[:80]!r}")

        def move() -> int:
            size = local.stat().st_size
            if size > max_bytes:
                raise OutputError(detail=f"upload is {size} bytes, over {max_bytes}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(local, dest)
            return size

        try:
            size = await asyncio.to_thread(move)
        except FileNotFoundError:
            raise OutputError(detail="the uploaded output is missing") from None
        return DownloadedFile(path=dest, size=size, content_type=guess_content_type(dest.name))


# -- what the core needs to know (see bot/providers/registry.py) ---------------------------------------


def upload_store(
    settings: Settings, provider: str, secret: SecretStr | None, *, root: Path, max_files: int
) -> UploadStore | None:
    """Where ``provider``'s Cog server uploads its outputs (``--upload-url``, under ``[webhooks] public_url``),
    kept under ``root``; None without a secret (it can't upload, and is refused)."""
    if secret is None or settings.webhooks.public_url is None:
        return None
    public = str(settings.webhooks.public_url).rstrip("/")
    key = secret.get_secret_value()
    prefix = f"{public}{uploads_path(provider)}/{key}/"
    return UploadStore(root, public_prefix=prefix, secret=key, max_files=max_files)


def check_settings(settings: Settings, routes: Sequence[ProviderRoute]) -> None:
    """Models on a Cog server need its address, and a public URL for its webhooks (its only way back)."""
    if not routes:
        return
    models = ", ".join(route.model for route in routes)
    if _settings(settings).base_url is None:
        raise ConfigError(
            f"invalid configuration: {models} run on a Cog server, but [cog] base_url is not set (ENCORE_COG__BASE_URL)"
        )
    if settings.webhooks.public_url is None:
        raise ConfigError(
            f"invalid configuration: {models} run on a Cog server, which can only report back by "
            "webhook: set [webhooks] public_url (ENCORE_WEBHOOKS__PUBLIC_URL) to a URL it can reach"
        )


def cost_usd(job: Costed, predict_time_s: float | None, limits: LimitsSettings) -> float | None:
    """Your own GPUs: a job on a Cog server costs Encore's budget nothing."""
    return 0.0


PROVIDER = ProviderSpec[CogClient](
    name="cog",
    title="the Cog server ([cog] base_url)",
    billed=False,
    key_env=None,
    protocol=ProviderProtocol.PREDICTIONS,
    capacity=lambda settings: _settings(settings).max_concurrency,
    cost_usd=cost_usd,
    webhook=WebhookRoute.PER_JOB,
    on_restart=OnRestart.POLL,
    check=check_settings,
    build=CogClient.from_settings,
    settings=CogSettings,
    label="a self-hosted Cog server",
)
