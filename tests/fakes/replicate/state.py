"""The typed base the fake Replicate's parts share: its settings, what it has stored, URLs and pagination.

``FakeReplicate`` (server.py) is this state plus the parts, each a mixin over it: webhook delivery
(webhooks.py), the prediction state machine (predictions.py) and the files API (files.py).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from tests.fakes._http import FakeServer
from tests.fakes.models import MODELS, FakeModel, OutputFile

from .errors import Fault, _bad_request
from .records import Prediction, StoredFile, WebhookDelivery
from .timing import RunTiming

DEFAULT_TOKEN = "r8_fake_token_0123456789"
# Replicate's documented limits per account: 600 creates and 3,000 other API calls a minute (tests/specs/replicate.md).
REAL_RATE_LIMITS = {"create": 600, "other": 3000}
RATE_WINDOW_S = 60.0
DEFAULT_WEBHOOK_SECRET = "whsec_" + base64.b64encode(hashlib.sha256(b"encore-fake").digest()[:24]).decode()


def _cursor(kind: str, seq: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{seq}".encode()).decode().rstrip("=")


class ReplicateState(FakeServer[Fault]):
    """Settings and records of one fake Replicate; see ``FakeReplicate``."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
        auto_advance: bool = False,
        reorder_webhooks: bool = False,
        webhook_retries: int = 2,
        page_size: int = 100,
        max_file_bytes: int = 100 * 1024 * 1024,
        prefer_wait_scale: float = 1.0,
        timing: RunTiming | None = None,
        rate_limits: Mapping[str, int] | None = REAL_RATE_LIMITS,
    ) -> None:
        super().__init__()
        if timing is not None and auto_advance:
            raise ValueError("timing and auto_advance both decide when predictions advance: pick one")
        self.token = token
        self.webhook_secret = webhook_secret
        self.auto_advance = auto_advance
        self.reorder_webhooks = reorder_webhooks  # hold `start` webhooks and send them after `completed`
        self.webhook_retries = webhook_retries  # extra attempts for the final webhook
        self.webhook_retry_delay_s = 0.002  # doubled after each failed attempt
        self.webhook_timeout_s = 5.0
        self.page_size = page_size
        self.max_file_bytes = max_file_bytes  # uploads of this size or more get 413
        self.prefer_wait_scale = prefer_wait_scale  # multiplies `Prefer: wait=N` so tests can shorten it
        self.timing = timing  # set: every new prediction runs by itself, for as long as real ones take
        self.logs_webhook_every_s = 0.5  # Replicate sends `logs` (and `output`) webhooks at most this often
        # Calls per account (token) in any RATE_WINDOW_S, by kind ("create", "other"); past them: 429 (None: no
        # limits). ``throttled`` counts the 429s they answered, by kind.
        self.rate_limits = dict(rate_limits) if rate_limits is not None else None
        self.throttled: Counter[str] = Counter()
        self._calls: dict[str, deque[float]] = {}  # kind -> when the calls in the window came (monotonic)
        # Predictions created and not yet finished, now and at the most (what a provider cap bounds).
        self.in_flight = 0
        self.max_in_flight = 0
        self.models: dict[str, FakeModel] = dict(MODELS)
        self.predictions: dict[str, Prediction] = {}
        self.files: dict[str, StoredFile] = {}
        self.input_fetches: list[str] = []  # file-input URLs fetched for predictions, in order
        self.webhook_deliveries: list[WebhookDelivery] = []
        self._outputs: dict[str, dict[str, OutputFile]] = {}
        self._seq = itertools.count(1)
        self._new_predictions: deque[str] = deque()
        self._new_deliveries: deque[WebhookDelivery] = deque()
        self._webhook_gates: dict[str, asyncio.Event] = {}  # predictions whose webhooks are held back
        self._download_gates: dict[str, asyncio.Event] = {}  # predictions whose output downloads are held back
        self._output_swap: Callable[[OutputFile], OutputFile] | None = None
        self._drivers: set[asyncio.Task[None]] = set()  # predictions running by themselves (``timing``)

    # ------------------------------------------------------------ URLs, pagination, lookups

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def _page(self, request: web.Request, items: list[tuple[int, Any]]) -> dict[str, Any]:
        """Cursor pagination, newest (highest seq) first; cursors are ``b:<seq>`` (older) / ``a:<seq>``."""
        items = sorted(items, key=lambda item: -item[0])
        page = items[: self.page_size]
        if cursor := request.query.get("cursor"):
            try:
                kind, seq = base64.urlsafe_b64decode(cursor + "==").decode().split(":")
                older = [i for i in items if i[0] < int(seq)] if kind == "b" else None
                newer = [i for i in items if i[0] > int(seq)] if kind == "a" else None
            except ValueError:
                raise _bad_request("Invalid cursor") from None
            page = older[: self.page_size] if older is not None else (newer or [])[-self.page_size :]

        def link(kind: str, seq: int) -> str:
            return f"{self.root_url}{request.path}?{urlencode({**request.query, 'cursor': _cursor(kind, seq)})}"

        more_older = bool(page) and any(i[0] < page[-1][0] for i in items)
        more_newer = bool(page) and any(i[0] > page[0][0] for i in items)
        return {
            "next": link("b", page[-1][0]) if more_older else None,
            "previous": link("a", page[0][0]) if more_newer else None,
            "results": [i[1] for i in page],
        }

    def _over_limit(self, kind: str) -> bool:
        """Count a call of ``kind`` against its limit; True (not counted) if the window is full."""
        if self.rate_limits is None or kind not in self.rate_limits:
            return False
        now = time.monotonic()
        calls = self._calls.setdefault(kind, deque())
        while calls and now - calls[0] >= RATE_WINDOW_S:
            calls.popleft()
        if len(calls) >= self.rate_limits[kind]:
            self.throttled[kind] += 1
            return True
        calls.append(now)
        return False

    def calls_at(self, kind: str) -> list[float]:
        """When (``time.monotonic``) this fake accepted the calls of ``kind`` it still counts, oldest first."""
        return list(self._calls.get(kind, ()))

    def most_in_any_window(self, kind: str) -> int:
        """The most calls of ``kind`` this fake accepted in any RATE_WINDOW_S of those it still remembers."""
        times = self.calls_at(kind)
        most, left = 0, 0
        for right, at in enumerate(times):
            while at - times[left] >= RATE_WINDOW_S:
                left += 1
            most = max(most, right - left + 1)
        return most

    def prediction(self, prediction_id: str) -> Prediction:
        """The live prediction record (KeyError if unknown)."""
        return self.predictions[prediction_id]
