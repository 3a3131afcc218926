"""Webhooks: Standard Webhooks signatures, background delivery in order with retries, holding them back."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterable
from dataclasses import replace

from .records import Prediction, WebhookDelivery, _Message, _webhook_id
from .state import ReplicateState


def sign_webhook(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks ``v1,<base64 HMAC-SHA256>`` of ``<id>.<timestamp>.<body>``, keyed by the secret."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


class WebhookSender(ReplicateState):
    """Sends each prediction's webhooks (``start``, ``completed``) and lets tests await or hold them."""

    def _emit(self, pred: Prediction, event: str, *, duplicates: int = 0) -> None:
        url = pred.webhook
        if url is None or event not in (pred.events_filter or ("output", "completed")):
            return
        body = json.dumps(pred.to_json(self.base_url)).encode()
        msg = _Message(pred.id, event, url, _webhook_id(), body, retry=event == "completed")
        if event == "start" and self.reorder_webhooks:
            pred.held_webhooks.append(msg)
            return
        self._schedule(msg)
        for _ in range(duplicates):
            self._schedule(replace(msg, retry=False))

    def _schedule(self, msg: _Message) -> None:
        """Deliver in the background, after earlier messages for the same prediction."""
        self._chain(msg.prediction_id, lambda: self._deliver(msg))

    async def _deliver(self, msg: _Message) -> None:
        if (gate := self._webhook_gates.get(msg.prediction_id)) is not None:
            await gate.wait()
        attempts = 1 + (self.webhook_retries if msg.retry else 0)
        for attempt in range(1, attempts + 1):
            status = await self._post_signed(msg.url, msg.webhook_id, msg.body)
            delivery = WebhookDelivery(msg.webhook_id, msg.event, status, msg.prediction_id, attempt, msg.body)
            self._log(self.webhook_deliveries, self._new_deliveries, delivery)
            if status is not None and 200 <= status < 300:
                return
            if attempt < attempts:
                await asyncio.sleep(self.webhook_retry_delay_s * 2 ** (attempt - 1))

    async def _post_signed(
        self,
        url: str,
        webhook_id: str,
        body: bytes,
        *,
        timestamp: int | None = None,
        signature: str | None = None,
        omit_headers: Iterable[str] = (),
    ) -> int | None:
        ts = int(time.time()) if timestamp is None else timestamp
        headers = {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": sign_webhook(self.webhook_secret, webhook_id, ts, body)
            if signature is None
            else signature,
        }
        for name in omit_headers:
            headers.pop(name.lower(), None)
        return await self._post(url, body, headers, self.webhook_timeout_s)

    def hold_webhooks(self, prediction_id: str) -> None:
        """Delay every webhook of ``prediction_id`` (in order, with their retries) until ``release_webhooks``.

        Replicate's webhooks can arrive late, e.g. after the poller has already found the outcome.
        ``drain_webhooks`` waits for held webhooks too, so release them first.
        """
        self._webhook_gates.setdefault(prediction_id, asyncio.Event())

    def release_webhooks(self, prediction_id: str) -> None:
        """Send the held webhooks of ``prediction_id`` now (and later ones at once)."""
        gate = self._webhook_gates.pop(prediction_id, None)
        if gate is not None:
            gate.set()

    async def send_webhook(
        self,
        prediction_id: str,
        *,
        event: str = "completed",
        webhook_id: str | None = None,
        timestamp: int | None = None,
        signature: str | None = None,
        body: bytes | None = None,
        url: str | None = None,
        omit_headers: Iterable[str] = (),
    ) -> int:
        """POST one hand-made webhook now and return our server's status code (not recorded, never retried).

        Defaults: the prediction's current JSON, a fresh ``webhook-id``, now, a valid signature, its webhook URL.
        ``event`` is informational only. Raises ConnectionError if the receiver is unreachable.
        """
        del event  # informational: hand-made sends bypass the events filter
        pred = self.prediction(prediction_id)
        target = url or pred.webhook
        if target is None:
            raise ValueError(f"prediction {prediction_id} has no webhook URL; pass url=")
        data = body if body is not None else json.dumps(pred.to_json(self.base_url)).encode()
        wid = webhook_id or _webhook_id()
        status = await self._post_signed(
            target, wid, data, timestamp=timestamp, signature=signature, omit_headers=omit_headers
        )
        if status is None:
            raise ConnectionError(f"webhook POST to {target} failed")
        return status

    # ------------------------------------------------------------ awaitable hooks

    async def next_webhook_delivery(self, timeout: float = 5.0) -> WebhookDelivery:
        """The next webhook delivery attempt (each returned once, in order)."""
        return await self._next(self._new_deliveries, timeout, "webhook delivery")

    async def wait_for_webhook_deliveries(
        self, prediction_id: str, count: int, timeout: float = 5.0
    ) -> list[WebhookDelivery]:
        """The first ``count`` webhook delivery attempts for ``prediction_id`` (retries included), once made.

        Unlike ``next_webhook_delivery`` it consumes nothing, so many tasks can wait on their own predictions.
        """

        def check() -> list[WebhookDelivery] | None:
            sent = [d for d in self.webhook_deliveries if d.prediction_id == prediction_id]
            return sent[:count] if len(sent) >= count else None

        return await self._wait(check, timeout, f"{count} webhook deliveries for {prediction_id}")

    async def drain_webhooks(self, timeout: float = 5.0) -> None:
        """Wait until every scheduled webhook delivery (with retries) has finished."""
        if self._webhook_tasks:
            await asyncio.wait_for(asyncio.gather(*list(self._webhook_tasks), return_exceptions=True), timeout)
