"""Replicate's HTTP API: create, get, cancel and list predictions; the webhook secret; outputs.

One ``aiohttp.ClientSession`` (made in ``app.py``) carries every call. Idempotent calls retry on
429 and 5xx with the providers' one retry policy (:mod:`bot.providers.retry`: capped, jittered
exponential backoff that honours ``Retry-After``). A create is retried only when it provably never
reached Replicate (connection refused, or a 429); a create that timed out is reported as
:class:`SubmissionUncertainError` so the caller can look for it first.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from pydantic import ValidationError
from yarl import URL

from bot import logs, metrics
from bot.audio.download import data_url, fetch_to_file, guess_content_type, host_allowed, save_data_url
from bot.config import Settings, require_secret
from bot.errors import (
    ConfigError,
    OutputError,
    ProviderError,
    ProviderNotFoundError,
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
    ProviderProtocol,
    ProviderRoute,
    ProviderSpec,
    WebhookRoute,
)
from bot.providers.ratelimit import LimitFactory, local_limit
from bot.providers.replicate_api import (
    PREDICTION_ID,
    FileObject,
    ModelRef,
    PredictionPage,
    PredictionRequest,
    Problem,
    ReplicateSettings,
    WebhookSecret,
    error_for,
    nothing_created,
    parse_prediction,
    replicate_settings,
    transient,
)
from bot.providers.retry import RetryPolicy, retry_after_s

if TYPE_CHECKING:
    from collections.abc import Sequence

    from bot.config import LimitsSettings

log = logging.getLogger(__name__)


_MAX_LIST_PAGES = 5
# Replicate's guidance: inline files of 256 KB or less as data URLs; upload larger ones.
DATA_URL_MAX_BYTES = 256 * 1024


class ReplicateClient:
    name = "replicate"
    supports_get: bool = True
    poll_grace_s: float | None = None  # the service's own schedule (webhook grace or poll interval) applies

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_base: str,
        token: str,
        max_retries: int = 4,
        retry_base_s: float = 0.5,
        retry_max_s: float = 30.0,
        prediction_deadline_s: int | None = None,
        delivery_hosts: tuple[str, ...] = ("replicate.delivery", "*.replicate.delivery"),
        download_timeout_s: float = 120.0,
        creates_per_minute: int = 600,
        requests_per_minute: int = 3000,
        webhook_secret: str | None = None,
        rate_limit: LimitFactory = local_limit,
    ) -> None:
        """``rate_limit`` makes the limiters of the account's two budgets (shared by every process using this
        token when the wiring passes shared ones)."""
        self._session = session
        self._base = URL(api_base.rstrip("/"))
        self._token = token
        self._retry = RetryPolicy(
            retries=max_retries, base_s=retry_base_s, max_s=retry_max_s, retry_after_max_s=retry_max_s
        )
        self._deadline_s = prediction_deadline_s
        api_host = self._base.host or ""
        self._auth_hosts = (api_host, "replicate.delivery", "*.replicate.delivery")
        self._download_hosts = (api_host, *delivery_hosts)
        self._download_timeout_s = download_timeout_s
        # 5% under each limit, and bursts of a few seconds' worth: a backlog is spread out, not refused. The
        # limits are the account's: its budgets are named by the token's hash, never by the token.
        account = hashlib.sha256(token.encode()).hexdigest()[:16]
        self._create_limit = rate_limit(
            f"replicate:{account}:create", creates_per_minute * 95 // 100, max(1, creates_per_minute // 30)
        )
        self._api_limit = rate_limit(
            f"replicate:{account}:requests", requests_per_minute * 95 // 100, max(1, requests_per_minute // 30)
        )
        self._webhook_secret = webhook_secret  # REPLICATE_WEBHOOK_SECRET, else asked of Replicate when needed

    @classmethod
    def from_settings(cls, context: BuildContext, routes: Sequence[ProviderRoute]) -> ReplicateClient | None:
        """The client for ``[replicate]`` with REPLICATE_API_TOKEN; None when no setting routes work here."""
        if not routes:
            return None
        secrets, cfg = context.secrets, replicate_settings(context.settings)
        token = require_secret(secrets.get("REPLICATE_API_TOKEN"), "REPLICATE_API_TOKEN")
        signing = secrets.get("REPLICATE_WEBHOOK_SECRET")
        return cls(
            context.session(connect_s=cfg.connect_timeout_s, read_s=cfg.read_timeout_s),
            api_base=str(cfg.api_base),
            token=token,
            max_retries=cfg.max_retries,
            retry_base_s=cfg.retry_base_s,
            prediction_deadline_s=cfg.prediction_deadline_s,
            delivery_hosts=tuple(cfg.delivery_hosts),
            download_timeout_s=context.settings.storage.download_timeout_s,
            creates_per_minute=cfg.creates_per_minute,
            requests_per_minute=cfg.requests_per_minute,
            webhook_secret=signing.get_secret_value() if signing is not None else None,
            rate_limit=context.rate_limit,
        )

    # -- HTTP plumbing -------------------------------------------------------------------------

    def _url(self, path: str) -> URL:
        return URL(str(self._base) + path)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}

    async def _send(
        self,
        method: str,
        url: URL,
        *,
        operation: str,
        json: Any = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """One HTTP exchange; returns the parsed JSON or raises a typed ProviderError. Counted in the metrics
        as ``operation``."""
        await (self._create_limit if operation == "create" else self._api_limit).acquire()
        with metrics.provider_call(self.name, operation):
            return await self._exchange(method, url, json=json, data=data, headers=headers)

    async def _exchange(self, method: str, url: URL, *, json: Any, data: Any, headers: dict[str, str] | None) -> Any:
        async with self._session.request(
            method,
            url,
            json=json,
            data=data,
            headers={**self._headers(), **(headers or {})},
            allow_redirects=False,
        ) as response:
            if 200 <= response.status < 300:
                try:
                    return await response.json(content_type=None)
                except ValueError:
                    raise ProviderUnavailableError(detail=f"Replicate sent a non-JSON {response.status}") from None
            try:
                problem = Problem.model_validate(await response.json(content_type=None))
            except (ValueError, ValidationError):
                problem = Problem()
            raise error_for(response.status, problem, retry_after_s(response.headers))

    async def _idempotent(self, method: str, url: URL, *, operation: str) -> Any:
        """GET-like calls: retried on 429, 5xx, timeouts and connection errors."""
        try:
            return await self._retry.call(
                lambda: self._send(method, url, operation=operation),
                retry_if=transient,
                what=f"Replicate {method} {url.path}",
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise ProviderUnavailableError(detail=f"Replicate unreachable: {cause(exc)}") from None

    # -- predictions ---------------------------------------------------------------------------

    async def submit(
        self,
        model_ref: str,
        input: dict[str, Any],
        *,
        webhook_url: str | None = None,
        prediction_id: str | None = None,
    ) -> Prediction:
        """Create a prediction (Replicate picks its id: ``prediction_id`` is ignored)."""
        ref = ModelRef.parse(model_ref)
        request = PredictionRequest(
            input=input,
            webhook=webhook_url or None,
            # `logs` too: progress arrives without polling (Replicate sends at most two a second; intake reads one).
            webhook_events_filter=["start", "logs", "completed"] if webhook_url else None,
        )
        if ref.version is not None:
            url = self._url("/predictions")
            request.version = f"{ref.model}:{ref.version}" if ref.model else ref.version
        else:
            url = self._url(f"/models/{ref.model}/predictions")
        body = request.body()
        headers = {"Cancel-After": f"{self._deadline_s}s"} if self._deadline_s else {}
        try:
            data = await self._retry.call(
                lambda: self._send("POST", url, operation="create", json=body, headers=headers),
                retry_if=nothing_created,
                what="Replicate create",
            )
        except aiohttp.ClientConnectorError as exc:
            raise ProviderUnavailableError(detail=f"Replicate unreachable: {cause(exc)}") from None
        except ProviderUnavailableError as exc:
            # A 5xx may come after the prediction was created: not provably safe to repeat.
            raise SubmissionUncertainError(detail=str(exc)) from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise SubmissionUncertainError(detail=f"create interrupted: {type(exc).__name__}") from None
        return parse_prediction(data)

    async def get(self, prediction_id: str) -> Prediction:
        return parse_prediction(await self._idempotent("GET", self._prediction_url(prediction_id), operation="get"))

    async def cancel(self, prediction_id: str) -> Prediction | None:
        # Canceling twice is harmless, so the cancel call is retried like a GET.
        data = await self._idempotent("POST", self._prediction_url(prediction_id) / "cancel", operation="cancel")
        return parse_prediction(data) if isinstance(data, dict) and data.get("id") else None

    async def find_submitted(
        self, model_ref: str, input: dict[str, Any], *, created_after: datetime
    ) -> Prediction | None:
        """The newest prediction since ``created_after`` with this model and exactly this input."""
        ref = ModelRef.parse(model_ref)
        url: URL | None = self._url("/predictions").with_query(
            created_after=created_after.astimezone(UTC).isoformat().replace("+00:00", "Z")
        )
        for _ in range(_MAX_LIST_PAGES):
            if url is None:
                break
            try:
                page = PredictionPage.model_validate(await self._idempotent("GET", url, operation="list"))
            except ValidationError:
                raise ProviderUnavailableError(detail="Replicate sent a malformed prediction list") from None
            for prediction in page.results:
                same_model = ref.version in (None, prediction.version) or prediction.version == "hidden"
                if ref.model and prediction.model and prediction.model != ref.model:
                    same_model = False
                if same_model and prediction.input == input:
                    return prediction
            url = URL(page.next) if page.next and self._is_api_url(page.next) else None
        return None

    async def webhook_secret(self) -> str | None:
        """The secret Replicate signs webhooks with: REPLICATE_WEBHOOK_SECRET, else the account's, fetched once
        (and masked in the logs from then on). None if it can't be had: Encore then only polls."""
        if self._webhook_secret is not None:
            return self._webhook_secret
        try:
            data = await self._idempotent("GET", self._url("/webhooks/default/secret"), operation="webhook_secret")
            try:
                secret = WebhookSecret.model_validate(data).key
            except ValidationError:
                raise ProviderUnavailableError(detail="Replicate sent a malformed webhook secret") from None
        except ProviderError as exc:
            log.error("could not fetch the Replicate webhook secret (%s); falling back to polling only", exc)
            return None
        logs.register_secret("REPLICATE_WEBHOOK_SECRET", secret)
        self._webhook_secret = secret
        return secret

    def _prediction_url(self, prediction_id: str) -> URL:
        if not PREDICTION_ID.match(prediction_id):
            raise ProviderNotFoundError(detail=f"malformed prediction id {prediction_id!r}")
        return self._url(f"/predictions/{prediction_id}")

    def _is_api_url(self, url: str) -> bool:
        parsed = URL(url)
        return parsed.origin() == self._base.origin() and parsed.path.startswith(self._base.path)

    # -- files ---------------------------------------------------------------------------------

    async def upload(self, path: Path) -> str:
        """A data URL for a small file; a Replicate file (``POST /files``) for a larger one."""
        size = (await asyncio.to_thread(path.stat)).st_size
        if size <= DATA_URL_MAX_BYTES:
            return await data_url(path)
        data = await asyncio.to_thread(path.read_bytes)

        def form() -> aiohttp.FormData:  # a fresh body per attempt: a sent form can't be sent again
            body = aiohttp.FormData()
            body.add_field("content", io.BytesIO(data), filename=path.name, content_type=guess_content_type(path.name))
            return body

        # A file upload is not idempotent: like a create, it is retried only if it never arrived.
        try:
            body = await self._retry.call(
                lambda: self._send("POST", self._url("/files"), operation="upload", data=form()),
                retry_if=nothing_created,
                what="Replicate file upload",
            )
        except aiohttp.ClientConnectorError as exc:
            raise ProviderUnavailableError(detail=f"Replicate unreachable: {cause(exc)}") from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise ProviderUnavailableError(detail=f"file upload interrupted: {cause(exc)}") from None
        try:
            return FileObject.model_validate(body).urls.get
        except ValidationError:
            raise ProviderUnavailableError(detail="Replicate sent a malformed file object") from None

    # -- outputs -------------------------------------------------------------------------------

    async def download(self, url: str, dest: Path, *, max_bytes: int) -> DownloadedFile:
        """Fetch an output file; only from Replicate's hosts, with the token only for them."""
        if url.startswith("data:"):
            return await save_data_url(url, dest, max_bytes=max_bytes)
        parsed = URL(url)
        secure = parsed.scheme == "https" or (parsed.scheme == "http" and self._base.scheme == "http")
        if not secure or not host_allowed(url, self._download_hosts):
            raise OutputError(detail=f"refusing to download output from {parsed.scheme}://{parsed.host}")
        headers = self._headers() if host_allowed(url, self._auth_hosts) else {}
        with metrics.provider_call(self.name, "download"):
            return await fetch_to_file(
                self._session,
                url,
                dest,
                max_bytes=max_bytes,
                timeout_s=self._download_timeout_s,
                headers=headers,
            )


# -- what the core needs to know (see bot/providers/registry.py) ---------------------------------------


def check_settings(settings: Settings, routes: Sequence[ProviderRoute]) -> None:
    """Every reference routed to Replicate must parse, and a shipped placeholder must have been replaced."""
    for route in routes:
        try:
            ref = ModelRef.parse(route.ref)
        except ValueError as exc:
            raise ConfigError(f"invalid configuration: {route.setting}: {exc}") from None
        if route.placeholder_hint and ref.version is not None and set(ref.version) == {"0"}:
            raise ConfigError(f"invalid configuration: {route.setting}: {route.placeholder_hint}")


def cost_usd(job: Costed, predict_time_s: float | None, limits: LimitsSettings) -> float | None:
    """Replicate bills GPU seconds: ``predict_time`` times ``[limits] replicate_usd_per_s``."""
    return round(predict_time_s * limits.replicate_usd_per_s, 6) if predict_time_s is not None else None


PROVIDER = ProviderSpec[ReplicateClient](
    name="replicate",
    title="Replicate",
    key_env="REPLICATE_API_TOKEN",
    protocol=ProviderProtocol.PREDICTIONS,
    capacity=lambda settings: settings.limits.replicate_jobs_in_flight,
    cost_usd=cost_usd,
    webhook=WebhookRoute.SIGNED,
    on_restart=OnRestart.POLL,
    check=check_settings,
    build=ReplicateClient.from_settings,
    settings=ReplicateSettings,
    secrets=("REPLICATE_WEBHOOK_SECRET",),
    webhook_path=lambda settings: settings.webhooks.path,  # [webhooks] path
)
