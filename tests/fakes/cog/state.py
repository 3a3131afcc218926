"""The typed base the fake Cog server's parts share: its settings and what it has recorded.

``FakeCog`` (server.py) is this state plus the parts, each a mixin over it: webhook delivery (webhooks.py),
output files (outputs.py) and running predictions (predictions.py).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from datetime import datetime
from typing import Any

from tests.fakes._http import FakeServer
from tests.fakes.models import MUSICGEN, FakeModel

from .records import CogPrediction, UploadAttempt, WebhookDelivery, _now
from .responses import Fault
from .validation import input_model, request_model

REQUESTS_UA = "python-requests/2.31.0"


class CogState(FakeServer[Fault]):
    """Settings and records of one fake Cog server; see ``FakeCog``."""

    def __init__(
        self,
        *,
        model: FakeModel = MUSICGEN,
        upload_url: str | None = None,
        max_concurrency: int = 1,
        webhook_auth_token: str | None = None,
        setup_done: bool = True,
        cog_version: str = "0.13.7",
        auto_complete: bool = False,
        reorder_webhooks: bool = False,
        webhook_retries: int = 12,
        webhook_backoff_s: float = 0.001,
        webhook_backoff_max_s: float = 0.01,
        webhook_timeout_s: float = 5.0,
        upload_retries: int = 3,
        upload_backoff_s: float = 0.001,
        upload_timeout_s: float = 15.0,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        super().__init__()
        self.model = model
        self.upload_url = upload_url  # the --upload-url flag; may be set after start()
        self.max_concurrency = max_concurrency
        self.webhook_auth_token = webhook_auth_token  # WEBHOOK_AUTH_TOKEN
        self.cog_version = cog_version
        self.auto_complete = auto_complete
        self.reorder_webhooks = reorder_webhooks  # hold non-terminal webhooks until after `completed`
        self.webhook_retries = webhook_retries  # extra attempts for the terminal webhook (cog: 12)
        self.webhook_backoff_s = webhook_backoff_s  # cog: 0.1
        self.webhook_backoff_max_s = webhook_backoff_max_s  # cog (urllib3): 120
        self.webhook_timeout_s = webhook_timeout_s
        self.upload_retries = upload_retries  # extra attempts for an output upload (cog: 3)
        self.upload_backoff_s = upload_backoff_s  # cog: 0.1
        self.upload_timeout_s = upload_timeout_s
        self.setup_status: str = "succeeded" if setup_done else "starting"  # starting|succeeded|failed
        self.setup_logs = ""
        self.defunct = False
        self.shutdown_requested = False
        self._stopped = False
        self.webhook_deliveries: list[WebhookDelivery] = []
        self.uploads: list[UploadAttempt] = []
        self.input_fetches: list[str] = []  # file-input URLs fetched, in order
        self.history: list[CogPrediction] = []  # every run, in creation order
        self.running: dict[str, CogPrediction] = {}  # by key
        self.input_type = input_model(model.input_schema)
        self.request_type = request_model(self.input_type)
        self._setup_started_at = _now()
        self._setup_completed_at: datetime | None = self._setup_started_at if setup_done else None
        self._noid = itertools.count(1)
        self._new_predictions: deque[str] = deque()
        self._new_deliveries: deque[WebhookDelivery] = deque()
        self._new_uploads: deque[UploadAttempt] = deque()
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def user_agent(self) -> str:
        return f"cog-worker/{self.cog_version} {REQUESTS_UA}"
