"""What every provider offers the job service, and the prediction shape they all report in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field


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


class Provider(Protocol):
    """The small surface the job service needs from a hosted model API."""

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
