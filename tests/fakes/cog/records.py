"""What the fake Cog server keeps: predictions, webhook messages and delivery attempts, output uploads."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.fakes.models import OutputFile

TERMINAL = frozenset({"succeeded", "failed", "canceled"})


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class WebhookDelivery:
    event: str  # start | output | logs | completed
    status_code: int | None  # None: connection error or timeout
    body: dict[str, Any]
    prediction_id: str  # the prediction's key (its id, or the internal key when it has none)
    attempt: int  # 1 for the first try
    url: str
    headers: dict[str, str]


@dataclass(frozen=True)
class UploadAttempt:
    url: str
    status_code: int | None  # None: connection error or timeout
    headers: dict[str, str]  # as sent
    size: int
    prediction_id: str  # key
    attempt: int
    multipart: bool  # True for the sync ``output_file_prefix`` style


@dataclass
class _Message:
    key: str
    event: str
    url: str
    body: bytes
    headers: dict[str, str]

    @property
    def terminal(self) -> bool:
        return self.event == "completed"


@dataclass
class CogPrediction:
    """One run. ``key`` identifies it in the fake's API; ``id`` is what the client sent (maybe None)."""

    key: str
    id: str | None
    input: dict[str, Any]
    model_input: dict[str, Any]
    created_at: str | None
    webhook: str | None
    events: frozenset[str]
    output_file_prefix: str | None
    respond_async: bool
    upload: bool  # async and the server has an upload_url
    trace_headers: dict[str, str]
    status: str = "processing"
    output: Any = None  # as cog holds it: local path(s), or uploaded URL(s)
    raw_output: Any = None  # the model's return value (OutputFile objects intact)
    logs: str = ""
    error: str | None = None
    started_at: datetime = field(default_factory=_now)
    completed_at: datetime | None = None
    metrics: dict[str, Any] | None = None
    local_paths: dict[str, OutputFile] = field(default_factory=dict)
    completing: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    held_webhooks: list[_Message] = field(default_factory=list, repr=False)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def to_json(self) -> dict[str, Any]:
        """The full PredictionResponse, as the HTTP routes return it (``output`` as cog holds it)."""
        return {
            "input": self.input,
            "output": self.output,
            "id": self.id,
            "version": None,
            "created_at": self.created_at,
            "started_at": self.started_at.isoformat(),
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
            "logs": self.logs,
            "error": self.error,
            "status": self.status,
            "metrics": self.metrics,
        }

    def webhook_json(self) -> dict[str, Any]:
        """Only the fields cog has set (``exclude_unset``): no ``version``, ``error``/``metrics`` when unset."""
        out = self.to_json()
        del out["version"]
        for key in ("completed_at", "error", "metrics"):
            if out[key] is None:
                del out[key]
        return out
