"""What a provider offers the core: one of two protocols, the declarations the core reads, the shapes
they report in.

- :class:`PredictionProvider`: asynchronous predictions (Replicate, a Cog server). Submit, then learn the
  outcome by webhook or poll; get, cancel, find a submission whose answer was lost, move files in and out.
- :class:`CallProvider`: one long synchronous call is the job (ElevenLabs Music). Cancel = abort the call
  (cancel the task that owns it).

Each provider module declares a :class:`ProviderSpec` (its protocol, capacity, cost rule, webhook route,
what a restart does to its jobs, how it is built from the settings); :mod:`bot.providers.registry` lists
them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    import aiohttp

    from bot.config import LimitsSettings, Secrets, Settings


class PredictionStatus(StrEnum):
    STARTING = "starting"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    ABORTED = "aborted"  # ended before it started (e.g. its deadline passed while queued)

    @property
    def is_terminal(self) -> bool:
        return self in (
            PredictionStatus.SUCCEEDED,
            PredictionStatus.FAILED,
            PredictionStatus.CANCELED,
            PredictionStatus.ABORTED,
        )


class PredictionMetrics(BaseModel):
    model_config = ConfigDict(extra="allow")

    predict_time: float | None = None
    total_time: float | None = None


class Prediction(BaseModel):
    """A provider's prediction, parsed at the edge. Unknown fields are kept but ignored."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=200)
    status: PredictionStatus
    model: str | None = None
    version: str | None = None
    input: dict[str, Any] = Field(default_factory=dict)
    output: Any = None
    error: str | None = None
    logs: str | None = None
    data_removed: bool = False
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    metrics: PredictionMetrics | None = None


@dataclass(frozen=True)
class DownloadedFile:
    path: Path
    size: int
    content_type: str


@dataclass
class Song:
    """A song a :class:`CallProvider` made: its audio (written to the path asked for) and what came with it."""

    path: Path
    size: int
    content_type: str
    metadata: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, Any] | None = None
    song_id: str | None = None


# Bytes of the answer received so far (a long call's progress).
ProgressCallback = Callable[[int], Awaitable[None]]


@runtime_checkable
class PredictionProvider(Protocol):
    """Asynchronous predictions: what the job service needs from a hosted model API like Replicate's."""

    name: str
    # False for providers with no GET of a prediction (Cog): polling then only detects lost jobs,
    # first after ``poll_grace_s`` (None: the service's own schedule).
    supports_get: bool
    poll_grace_s: float | None

    async def submit(
        self,
        model_ref: str,
        input: dict[str, Any],
        *,
        webhook_url: str | None = None,
        prediction_id: str | None = None,
    ) -> Prediction:
        """Start a prediction. ``prediction_id`` is ours to choose where the provider allows it (Cog)."""
        ...

    async def get(self, prediction_id: str) -> Prediction: ...

    async def cancel(self, prediction_id: str) -> Prediction | None: ...

    async def find_submitted(
        self, model_ref: str, input: dict[str, Any], *, created_after: datetime
    ) -> Prediction | None:
        """After an uncertain create: the prediction it made, if it reached the provider."""
        ...

    async def download(self, url: str, dest: Path, *, max_bytes: int) -> DownloadedFile: ...

    async def upload(self, path: Path) -> str:
        """Make a local file usable as a model input; returns the value to put in the input."""
        ...


@runtime_checkable
class CallProvider(Protocol):
    """One long synchronous call per job (ElevenLabs Music). The job service runs each call in a task it owns;
    canceling that task aborts the request, which is how a job is canceled."""

    name: str

    async def compose(
        self,
        body: dict[str, Any],
        dest: Path,
        *,
        output_format: str,
        length_s: float,
        on_bytes: ProgressCallback | None = None,
    ) -> Song:
        """A song (its audio written to ``dest``), progress reported as bytes arrive."""
        ...

    async def plan(
        self, prompt: str, *, model_id: str, length_ms: int | None = None, source: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A composition plan for ``prompt`` (free)."""
        ...

    async def separate_stems(
        self, path: Path, *, variation: str, output_format: str, sign_with_c2pa: bool = False
    ) -> bytes:
        """A ZIP of the stems of the audio at ``path`` (signed with C2PA content credentials if asked: MP3 only)."""
        ...


@runtime_checkable
class SignsWebhooks(Protocol):
    """A provider whose webhooks carry a signature (Standard Webhooks): the secret that checks them."""

    async def webhook_secret(self) -> str | None:
        """The signing secret (configured, or asked of the provider); None if it can't be had (poll only)."""
        ...


# -- declarations ------------------------------------------------------------------------------------


class ProviderProtocol(StrEnum):
    """How a provider runs a job."""

    PREDICTIONS = "predictions"  # PredictionProvider: submit, then webhook or poll
    CALL = "call"  # CallProvider: one long synchronous call


class OnRestart(StrEnum):
    """What a restart does to a job that was at the provider."""

    POLL = "poll"  # the job lives on at the provider: look it up again (poll; webhooks keep coming)
    INTERRUPTED = "interrupted"  # the call died with the process; running it again costs again: fail it, offer Retry


class WebhookRoute(StrEnum):
    """How a provider reports back to Encore's web server."""

    NONE = "none"  # it doesn't: the answer to the call is the outcome
    SIGNED = "signed"  # one URL for every job (``[webhooks] path``), each webhook signed (Replicate)
    PER_JOB = "per_job"  # a URL per job carrying the job's unguessable token: /cog/webhooks/<job>/<token> (Cog)


class Costed(Protocol):
    """What a cost rule may read of a job (``bot.records.Job`` is one)."""

    @property
    def provider(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def duration_s(self) -> float | None: ...


@dataclass(frozen=True)
class ProviderRoute:
    """One place in the settings that sends work to a provider: a catalog model and its reference there."""

    model: str  # the catalog model, e.g. "musicgen"
    ref: str  # what the provider is asked to run (a Replicate "owner/name:version"; ignored by some)
    setting: str  # where it is set, for error messages: "[models.musicgen] ref", "[stems] demucs_ref"
    # Said when the reference is still the shipped placeholder (an all-zero version): how to fix it.
    placeholder_hint: str | None = None


class SessionFactory(Protocol):
    """Makes one HTTP session (made and closed by the core) with these timeouts."""

    def __call__(self, *, connect_s: float, read_s: float) -> aiohttp.ClientSession: ...


@dataclass(frozen=True)
class BuildContext:
    """What a provider's factory builds itself from."""

    settings: Settings
    secrets: Secrets
    session: SessionFactory


ClientT = TypeVar("ClientT", covariant=True)


@dataclass(frozen=True)
class ProviderSpec(Generic[ClientT]):
    """What the core needs to know of one provider, declared by its module.

    - ``title``, ``key_env``: how messages to the operator name it, and the variable of its API key.
    - ``protocol``: :class:`PredictionProvider` or :class:`CallProvider` (the built client is one).
    - ``capacity``: jobs it may run at once, from the settings (0: no cap); the scheduler's cap.
    - ``cost_usd``: what a finished job cost, from what the provider reported (GPU seconds, if any), with the
      ``[limits]`` prices; None when there is no such figure (the estimate stands).
    - ``webhook``: how it reports back (:class:`WebhookRoute`).
    - ``on_restart``: what a restart does to its jobs at the provider (:class:`OnRestart`).
    - ``check``: refuse settings it can't run with (a :class:`~bot.errors.ConfigError`), before anything opens;
      given the places in the settings that route work to it (none: it isn't used).
    - ``build``: the client, from the settings, the secrets and a session factory; None when it is not used
      or not set up (e.g. an optional API key is missing).
    """

    name: str
    title: str  # how a message to the operator names it ("Replicate", "the Cog server ([cog] base_url)")
    key_env: str | None  # the environment variable holding its API key, if it takes one
    protocol: ProviderProtocol
    capacity: Callable[[Settings], int]
    cost_usd: Callable[[Costed, float | None, LimitsSettings], float | None]
    webhook: WebhookRoute
    on_restart: OnRestart
    check: Callable[[Settings, Sequence[ProviderRoute]], None]
    build: Callable[[BuildContext, Sequence[ProviderRoute]], ClientT | None]
