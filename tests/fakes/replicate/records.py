"""What the fake Replicate keeps: predictions, stored files, webhook messages and their delivery attempts."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import string
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.fakes.models import FakeModel

TERMINAL = frozenset({"succeeded", "failed", "canceled", "aborted"})
_ID_CHARS = string.ascii_lowercase + string.digits


def _new_id(prefix: str = "", n: int = 26, chars: str = _ID_CHARS) -> str:
    return prefix + "".join(secrets.choice(chars) for _ in range(n))


def _webhook_id() -> str:
    return _new_id("msg_", 27, string.ascii_letters + string.digits)


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class WebhookDelivery:
    webhook_id: str
    event: str
    status_code: int | None  # None: connection error or timeout
    prediction_id: str
    attempt: int  # 1 for the first try; duplicates start again at 1
    body: bytes
    at: float = field(default_factory=time.perf_counter)  # when the answer came (perf_counter)


@dataclass
class _Message:
    prediction_id: str
    event: str
    url: str
    webhook_id: str
    body: bytes
    retry: bool


@dataclass
class Prediction:
    id: str
    seq: int
    model: FakeModel
    version: str
    input: dict[str, Any]
    webhook: str | None = None
    events_filter: list[str] | None = None
    deadline: datetime | None = None
    created_at: datetime = field(default_factory=_now)
    status: str = "starting"
    output: Any = None
    logs: str = ""
    error: str | None = None
    data_removed: bool = False
    started_at: datetime | None = None
    completed_at: datetime | None = None
    running: bool = False  # fetching inputs or running the model
    done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    held_webhooks: list[_Message] = field(default_factory=list, repr=False)
    ended_perf: float | None = None  # when it reached a terminal status (perf_counter; for the benchmark)
    logs_webhook_at: float = float("-inf")  # when the last `logs` webhook went (monotonic)
    logs_webhook_due: asyncio.Task[None] | None = field(default=None, repr=False)  # the next one, held back

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def to_json(self, api: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "model": self.model.ref,
            "version": self.version,
            "input": self.input,
            "logs": self.logs,
            "output": self.output,
            "data_removed": self.data_removed,
            "error": self.error,
            "source": "api",
            "status": self.status,
            "created_at": _iso(self.created_at),
            "urls": {
                "get": f"{api}/predictions/{self.id}",
                "cancel": f"{api}/predictions/{self.id}/cancel",
                "web": f"https://replicate.com/p/{self.id}",
            },
        }
        for key in ("started_at", "completed_at", "deadline"):
            if (value := getattr(self, key)) is not None:
                out[key] = _iso(value)
        if self.completed_at is not None:
            start = self.started_at or self.completed_at
            out["metrics"] = {
                "predict_time": (self.completed_at - start).total_seconds(),
                "total_time": (self.completed_at - self.created_at).total_seconds(),
            }
        return out


@dataclass
class StoredFile:
    id: str
    seq: int
    content: bytes
    content_type: str
    filename: str
    metadata: dict[str, Any]
    created_at: datetime = field(default_factory=_now)

    def to_json(self, api: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "urls": {"get": f"{api}/files/{self.id}"},
            "content_type": self.content_type,
            "size": len(self.content),
            "checksums": {"sha256": hashlib.sha256(self.content).hexdigest()},
            "metadata": self.metadata,
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.created_at + timedelta(days=1)),
        }
