"""Webhooks as cog sends them: in order per prediction, the terminal one retried on 429/5xx with urllib3's backoff."""

from __future__ import annotations

import asyncio
import json

from .records import CogPrediction, WebhookDelivery, _Message
from .state import CogState

RETRY_WEBHOOK_STATUSES = frozenset({429, 500, 502, 503, 504})


def _backoff(failures: int, base: float, cap: float) -> float:
    """urllib3's Retry backoff after ``failures`` consecutive failures: none after the first, then doubling."""
    return 0.0 if failures <= 1 else min(cap, base * 2 ** (failures - 1))


class CogWebhooks(CogState):
    """Sends each prediction's webhooks (filter permitting) and lets tests await them."""

    def _emit(self, pred: CogPrediction, event: str) -> None:
        if pred.webhook is None or event not in pred.events:
            return
        headers = {"Content-Type": "application/json", "User-Agent": self.user_agent, **pred.trace_headers}
        if self.webhook_auth_token:
            headers["Authorization"] = f"Bearer {self.webhook_auth_token}"
        msg = _Message(pred.key, event, pred.webhook, json.dumps(pred.webhook_json()).encode(), headers)
        if self.reorder_webhooks and not msg.terminal:
            pred.held_webhooks.append(msg)
            return
        self._schedule(msg)
        if msg.terminal:
            for held in pred.held_webhooks:
                self._schedule(held)
            pred.held_webhooks.clear()

    def _schedule(self, msg: _Message) -> None:
        """Deliver in the background, after earlier messages for the same prediction."""
        self._chain(msg.key, lambda: self._deliver(msg))

    async def _deliver(self, msg: _Message) -> None:
        attempts = 1 + (self.webhook_retries if msg.terminal else 0)
        for attempt in range(1, attempts + 1):
            status = await self._post(msg.url, msg.body, msg.headers, self.webhook_timeout_s)
            delivery = WebhookDelivery(
                msg.event, status, json.loads(msg.body), msg.key, attempt, msg.url, dict(msg.headers)
            )
            self._log(self.webhook_deliveries, self._new_deliveries, delivery)
            if status is not None and status not in RETRY_WEBHOOK_STATUSES:
                return
            if attempt < attempts:
                await asyncio.sleep(_backoff(attempt, self.webhook_backoff_s, self.webhook_backoff_max_s))

    # ------------------------------------------------------------ awaitable hooks

    async def next_webhook_delivery(self, timeout: float = 5.0) -> WebhookDelivery:
        """The next webhook delivery attempt (each returned once, in order)."""
        return await self._next(self._new_deliveries, timeout, "webhook delivery")

    async def drain_webhooks(self, timeout: float = 5.0) -> None:
        """Wait until every scheduled webhook delivery (with retries) has finished."""
        async with asyncio.timeout(timeout):
            while self._webhook_tasks:
                await asyncio.gather(*list(self._webhook_tasks), return_exceptions=True)
