"""Replicate's HTTP API as data: its settings section, model references, request and response bodies, and how
an error answer becomes a typed error (once, here: messages for people never carry Replicate's raw text)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, ValidationError

from bot.config import Section, Settings
from bot.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderInputError,
    ProviderNotFoundError,
    ProviderRateLimitError,
    ProviderUnavailableError,
)
from bot.providers.base import Prediction


class ReplicateSettings(Section):
    """``[replicate]``: Replicate's API (REPLICATE_API_TOKEN, REPLICATE_WEBHOOK_SECRET in the environment)."""

    api_base: AnyHttpUrl = AnyHttpUrl("https://api.replicate.com/v1")
    connect_timeout_s: float = Field(default=5.0, gt=0, le=120)
    read_timeout_s: float = Field(default=30.0, gt=0, le=600)
    max_retries: int = Field(default=4, ge=0, le=10)
    retry_base_s: float = Field(default=0.5, gt=0, le=60)
    # Cancel a prediction on Replicate's side if it has not finished by then (Cancel-After).
    prediction_deadline_s: int = Field(default=1200, ge=5, le=7200)
    # Hosts allowed for output downloads besides api_base's own host.
    delivery_hosts: list[str] = Field(default_factory=lambda: ["replicate.delivery", "*.replicate.delivery"])
    # Replicate's documented rate limits per account; Encore spreads its calls to stay under them.
    creates_per_minute: int = Field(default=600, ge=10, le=100_000)
    requests_per_minute: int = Field(default=3000, ge=10, le=100_000)


def replicate_settings(settings: Settings) -> ReplicateSettings:
    """``[replicate]`` of ``settings``."""
    return settings.section("replicate", ReplicateSettings)


_VERSION_ID = re.compile(r"^[0-9a-f]{64}$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class ModelRef:
    """``owner/name``, ``owner/name:<version>`` or a bare ``<version>``."""

    model: str | None
    version: str | None

    @classmethod
    def parse(cls, ref: str) -> ModelRef:
        model, sep, version = ref.strip().partition(":")
        if not sep and _VERSION_ID.match(model):
            return cls(model=None, version=model)
        if not _MODEL_NAME.match(model):
            raise ValueError(f"not a Replicate model reference: {ref!r}")
        if sep and not _VERSION_ID.match(version):
            raise ValueError(f"not a Replicate version id: {version!r}")
        return cls(model=model, version=version or None)


class PredictionRequest(BaseModel):
    """The body of ``POST /predictions`` and ``POST /models/{owner}/{name}/predictions`` (official spec:
    ``version`` and ``input`` required on the first, no other top-level keys)."""

    model_config = ConfigDict(extra="forbid")

    version: str | None = None
    input: dict[str, Any]
    webhook: str | None = None
    webhook_events_filter: list[Literal["start", "output", "logs", "completed"]] | None = None

    def body(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class Problem(BaseModel):
    """Replicate's ``application/problem+json`` error body (also the bare ``{"detail": ...}`` 429)."""

    model_config = ConfigDict(extra="allow")

    title: str | None = None
    detail: str | None = None
    status: int | None = None
    invalid_fields: list[dict[str, Any]] | None = None


class PredictionPage(BaseModel):
    next: str | None = None
    results: list[Prediction]


class WebhookSecret(BaseModel):
    key: str


class FileUrls(BaseModel):
    get: str


class FileObject(BaseModel):
    id: str
    urls: FileUrls


def error_for(status: int, problem: Problem, retry_after_s: float | None) -> ProviderError:
    """Translate an HTTP error once, here. Messages for users never carry Replicate's raw text."""
    detail = f"Replicate HTTP {status}: {problem.title or ''} {problem.detail or ''}".strip()
    if status in (401, 403):
        return ProviderAuthError(detail=detail)
    if status == 404:
        return ProviderNotFoundError(detail=detail)
    if status == 422:
        fields = sorted({str(f.get("field", "")).removeprefix("input.") for f in problem.invalid_fields or []})
        fields = [f for f in fields if f]
        if problem.title and "version" in problem.title.lower():
            return ProviderInputError(
                "The configured model version isn't available on Replicate. An operator needs to fix it.",
                detail=detail,
            )
        message = "The music service refused those settings"
        message += f" ({', '.join(fields)})." if fields else "."
        return ProviderInputError(message, detail=detail)
    if status == 429:
        return ProviderRateLimitError(detail=detail, retry_after_s=retry_after_s)
    if status >= 500:
        return ProviderUnavailableError(detail=detail)
    return ProviderError(detail=detail)


PREDICTION_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")  # what a prediction id may be (it goes into a URL path)


def parse_prediction(data: Any) -> Prediction:
    """A prediction Replicate sent; one that doesn't parse is the service misbehaving (unavailable)."""
    try:
        return Prediction.model_validate(data)
    except ValidationError:
        raise ProviderUnavailableError(detail="Replicate sent a malformed prediction") from None


def transient(error: BaseException) -> bool:
    """A read or a cancel may be tried again after a 429, a 5xx, a timeout or a dropped connection."""
    return isinstance(error, ProviderRateLimitError | ProviderUnavailableError | TimeoutError | aiohttp.ClientError)


def nothing_created(error: BaseException) -> bool:
    """A create (or upload) may be tried again only if its answer proves nothing was made: Replicate refused
    it (429), or the connection never opened. A 5xx, a timeout or a connection lost mid-request may not."""
    return isinstance(error, ProviderRateLimitError | aiohttp.ClientConnectorError)
