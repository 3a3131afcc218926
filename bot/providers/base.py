"""What a provider offers the core: one of two protocols, the declarations the core reads, the shapes
they report in.

- :class:`PredictionProvider`: asynchronous predictions (Replicate, a Cog server). Submit, then learn the
  outcome by webhook or poll; get, cancel, find a submission whose answer was lost, move files in and out.
  A provider that is busy raises :class:`~bot.errors.ProviderBusyError` (the job waits its turn), one that
  lost a prediction :class:`~bot.errors.PredictionLostError` (the job runs again).
- :class:`CallProvider`: one long synchronous call is the job (ElevenLabs Music). Cancel = abort the call
  (cancel the task that owns it). One that also makes composition plans is a :class:`Planner`.

Each provider module declares a :class:`ProviderSpec` (its settings section and secrets, its protocol,
capacity, cost rule, webhook route, what a restart does to its jobs, how it is built from the settings);
:mod:`bot.providers.registry` lists them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from bot.providers.ratelimit import LimitFactory, local_limit

if TYPE_CHECKING:
    import aiohttp

    from bot.config import LimitsSettings, Secrets, Section, Settings
    from bot.providers.uploads import UploadStore


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


@dataclass(frozen=True)
class WordTime:
    """When a sung word is heard in a song (ElevenLabs' ``WordTimestamp``), in ms from its start."""

    word: str
    start_ms: int
    end_ms: int


@dataclass
class Song:
    """Audio a :class:`CallProvider` made (written where it was asked to), and what came with it."""

    path: Path
    size: int
    content_type: str
    metadata: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, Any] | None = None
    song_id: str | None = None
    model: str | None = None  # the provider's own model that made it (ElevenLabs' music_v1...), for its tags
    words: list[WordTime] | None = None  # asked for with_timestamps: each sung word, as the provider sent them


@dataclass
class Stems:
    """Stems a :class:`CallProvider` split a track into: each one's file, by stem name."""

    files: dict[str, Path]


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

    async def call(
        self,
        model: str,
        input: dict[str, Any],
        *,
        files: Mapping[str, str],
        length_s: float,
        dest: Path,
        max_bytes: int,
        on_bytes: ProgressCallback | None = None,
    ) -> Song | Stems:
        """Run catalog ``model`` on ``input`` (and the local ``files`` it names) in one call; progress reported
        as bytes arrive. What it writes starts with ``dest`` (``<dest>.mp3``, ``<dest>-stems/...``), none of it
        over ``max_bytes``."""
        ...


@runtime_checkable
class Planner(Protocol):
    """A provider that makes composition plans (free): a song's sections, styles and lyrics, to edit, then
    compose by a :class:`CallProvider` call with ``composition_plan`` in its input."""

    # The model its plans are shaped for (stored with each plan: the shape depends on it).
    plan_model: str

    async def plan(
        self, prompt: str, *, length_ms: int | None = None, source: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A composition plan for ``prompt``."""
        ...


@runtime_checkable
class SignsWebhooks(Protocol):
    """A provider whose webhooks carry a signature (Standard Webhooks): the secret that checks them."""

    async def webhook_secret(self) -> str | None:
        """The signing secret (configured, or asked of the provider); None if it can't be had (poll only)."""
        ...


@runtime_checkable
class FormatDefault(Protocol):
    """A provider whose output format, when a request names none, is a setting of its own (``[elevenlabs]
    output_format``): what a person's preferred kind of file is matched against."""

    output_format: str


@runtime_checkable
class TakesUploads(Protocol):
    """A provider that hands its output files back by uploading them to Encore (a Cog server): the web server
    mounts its upload target (:func:`uploads_path`). ``uploads`` None: it isn't set up to, and uploads are
    refused."""

    uploads: UploadStore | None


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
    """How a provider reports back to Encore's web server (which mounts a route for each built provider)."""

    NONE = "none"  # it doesn't: the answer to the call is the outcome
    SIGNED = "signed"  # one URL for all its jobs (ProviderSpec.webhook_path), each webhook signed (Replicate)
    PER_JOB = "per_job"  # a URL per job carrying the job's token: /<provider>/webhooks/<job>/<token> (Cog)


def job_webhooks_path(provider: str) -> str:
    """Where ``provider``'s per-job webhooks come (``WebhookRoute.PER_JOB``): this, then ``/<job id>/<token>``."""
    return f"/{provider}/webhooks"


def uploads_path(provider: str) -> str:
    """Where ``provider`` uploads output files (an :class:`~bot.providers.uploads.UploadStore`): this, then
    ``/<secret>/<file name>``."""
    return f"/{provider}/uploads"


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
    """What a provider's factory builds itself from. ``rate_limit`` makes the limiters it waits on before calls
    (shared with the other processes on the same account when the wiring has a shared database)."""

    settings: Settings
    secrets: Secrets
    session: SessionFactory
    rate_limit: LimitFactory = local_limit


ClientT = TypeVar("ClientT", covariant=True)


@dataclass(frozen=True)
class ProviderSpec(Generic[ClientT]):
    """What the core needs to know of one provider, declared by its module.

    - ``name``: how the settings name it (``[models.*] provider``), and its own section, ``[name]``.
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
    - ``settings``: the model of its ``[name]`` section (a :class:`~bot.config.Section`, every key with a
      default); ``settings.section(name, Model)`` reads it. None: it has no section.
    - ``secrets``: the other environment variables it reads secrets from (besides ``key_env``); they are read
      at startup, shown masked by ``check-config`` and masked in the logs.
    - ``webhook_path``: where its signed webhooks come (``WebhookRoute.SIGNED``), from the settings; None:
      ``/<name>/webhooks``.
    - ``label``: how the tags of a file it made name where it was made; None: its ``title``.
    - ``billed``: a run there is billed per run (False: your own server; ``/music models`` says so).
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
    settings: type[Section] | None = None
    secrets: tuple[str, ...] = ()
    webhook_path: Callable[[Settings], str] | None = None
    label: str | None = None
    billed: bool = True

    @property
    def secret_envs(self) -> tuple[str, ...]:
        """Every environment variable it reads a secret from."""
        return ((self.key_env,) if self.key_env else ()) + self.secrets

    def signed_webhook_path(self, settings: Settings) -> str:
        """Where its signed webhooks come (``WebhookRoute.SIGNED``)."""
        return self.webhook_path(settings) if self.webhook_path is not None else job_webhooks_path(self.name)
