"""Job states, the moves allowed between them, and the job record."""

from __future__ import annotations

import secrets
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class JobStatus(StrEnum):
    QUEUED = "queued"
    SUBMITTED = "submitted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # the output file is safely on our disk
    DELIVERED = "delivered"  # Discord (or the CLI) has it
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL

    @property
    def is_active_at_provider(self) -> bool:
        return self in (JobStatus.SUBMITTED, JobStatus.RUNNING)


TERMINAL = frozenset({JobStatus.DELIVERED, JobStatus.FAILED, JobStatus.CANCELED})

# For each target state, the states a job may move to it from. Anything else is refused.
ALLOWED_FROM: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset(),
    JobStatus.SUBMITTED: frozenset({JobStatus.QUEUED}),
    JobStatus.RUNNING: frozenset({JobStatus.SUBMITTED}),
    JobStatus.SUCCEEDED: frozenset({JobStatus.SUBMITTED, JobStatus.RUNNING}),
    JobStatus.DELIVERED: frozenset({JobStatus.SUCCEEDED}),
    JobStatus.FAILED: frozenset({JobStatus.QUEUED, JobStatus.SUBMITTED, JobStatus.RUNNING, JobStatus.SUCCEEDED}),
    JobStatus.CANCELED: frozenset({JobStatus.QUEUED, JobStatus.SUBMITTED, JobStatus.RUNNING}),
}

# The column that records when a job reached each state.
STATUS_TIME_COLUMN: dict[JobStatus, str] = {
    JobStatus.QUEUED: "created_at",
    JobStatus.SUBMITTED: "submitted_at",
    JobStatus.RUNNING: "running_at",
    JobStatus.SUCCEEDED: "succeeded_at",
    JobStatus.DELIVERED: "delivered_at",
    JobStatus.FAILED: "failed_at",
    JobStatus.CANCELED: "canceled_at",
}


class Pause(BaseModel):
    """The operator stopped new jobs (``/encore pause``): who did, and when (epoch seconds)."""

    model_config = ConfigDict(frozen=True)

    by: int
    at: float


def new_job_id() -> str:
    """A short id people can type: 10 lowercase base32 characters."""
    alphabet = "abcdefghijkmnpqrstuvwxyz23456789"  # no l, o, 0, 1
    return "".join(secrets.choice(alphabet) for _ in range(10))


class JobOrigin(BaseModel):
    """Who asked, and where: what delivery needs to find its way back."""

    model_config = ConfigDict(frozen=True)

    user_id: int
    guild_id: int | None = None
    channel_id: int | None = None
    interaction_id: int | None = None
    token_expires_at: float | None = None
    card_message_id: int | None = None  # when the card was posted before the job existed
    role_ids: tuple[int, ...] = ()  # the requester's roles, for guild rules (not stored)


class Job(BaseModel):
    """A row of the ``jobs`` table."""

    model_config = ConfigDict(frozen=True)

    id: str
    user_id: int
    guild_id: int | None
    channel_id: int | None
    interaction_id: int | None
    token_expires_at: float | None
    card_message_id: int | None
    provider: str
    model: str
    model_ref: str
    request: dict[str, Any]
    input: dict[str, Any]
    prediction_id: str | None
    status: JobStatus
    created_at: float
    updated_at: float
    submitted_at: float | None = None
    running_at: float | None = None
    succeeded_at: float | None = None
    delivered_at: float | None = None
    failed_at: float | None = None
    canceled_at: float | None = None
    attempts: int = 0
    delivery_attempts: int = 0
    error: str | None = None
    output_path: str | None = None
    output_size: int | None = None
    output_content_type: str | None = None
    delivery_message_id: int | None = None
    seed: int | None = None
    predict_time_s: float | None = None
    total_time_s: float | None = None
    batch_id: str | None = None
    batch_index: int = 0
    batch_size: int = 1
    image_path: str | None = None
    callback_token: str | None = None
    input_files: dict[str, str] = {}
    # What the provider returned besides the audio (song metadata, stem files...).
    result: dict[str, Any] = {}
    cost_usd: float = 0.0  # estimated when queued, actual once run
    # Its turn (bot.jobs.scheduler): the process starting it, and since when (None: waiting for its turn).
    claimed_by: str | None = None
    claimed_at: float | None = None

    @property
    def card_key(self) -> str:
        """Jobs of one batch share one card."""
        return self.batch_id or self.id

    @property
    def prompt(self) -> str:
        return str(self.request.get("prompt", ""))

    @property
    def context(self) -> dict[str, Any]:
        return dict(self.request.get("context") or {})

    @property
    def part(self) -> int:
        return int(self.context.get("part", 1))

    @property
    def duration_s(self) -> float | None:
        value = self.request.get("duration_s")
        return float(value) if value is not None else None

    @property
    def finished_at(self) -> float | None:
        return self.delivered_at or self.failed_at or self.canceled_at


class JobRequest(BaseModel):
    """A user's request for music, before validation against the catalog."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = "musicgen"
    prompt: str
    duration_s: float | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = None
    count: int = 1
    # Audio given by the user (a melody or a clip to continue): input key -> a file on our disk,
    # and that clip's length in seconds.
    files: dict[str, str] = Field(default_factory=dict)
    audio_s: float | None = None
    # Stored with the job as is: lineage (parent job, source message, part number) and, for a
    # continuation, the stitch plan (the source file and how much of it precedes the model's clip).
    context: dict[str, Any] = Field(default_factory=dict)
