"""Signed webhooks (``WebhookRoute.SIGNED``, Replicate's): verify the Standard Webhooks signature, drop
redeliveries, hand the prediction on. Mounted for each such provider at its ``webhook_path`` (:mod:`bot.web.routes`).

The signature is checked on the raw body before anything is parsed (``standardwebhooks`` does the
HMAC with a constant-time compare and a 5-minute timestamp window). A bad or missing signature gets
401 and changes nothing. A webhook we already handled (same ``webhook-id``) gets 200 and is dropped.
"""

from __future__ import annotations

import binascii
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from pydantic import ValidationError
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from bot import metrics
from bot.providers.base import Prediction
from bot.web.limits import body_deadline, too_slow

log = logging.getLogger(__name__)

# (webhook id, prediction) -> handled; False when the webhook id was seen before.
PredictionHandler = Callable[[str, Prediction], Awaitable[bool]]


class SignatureError(Exception):
    """The webhook is not provably from the provider."""


class WebhookVerifier:
    def __init__(self, secret: str) -> None:
        self._webhook = Webhook(secret)

    def verify(self, body: bytes, headers: dict[str, str]) -> None:
        """Raise :class:`SignatureError` unless the body is signed with our secret, within 5 minutes."""
        try:
            self._webhook.verify(body, headers, json_parse=False)
        except (WebhookVerificationError, ValueError, UnicodeDecodeError, binascii.Error) as exc:
            # Malformed headers make the library raise ValueError/binascii.Error: all mean "not signed".
            raise SignatureError(str(exc) or type(exc).__name__) from None


class SignedWebhookView:
    """The aiohttp handler for ``POST <path>``: a provider's signed webhooks (``source`` names it in the metrics)."""

    def __init__(self, verifier: WebhookVerifier, handler: PredictionHandler, *, source: str, path: str = "/") -> None:
        self._verifier = verifier
        self._handler = handler
        self._source = source
        self.path = path

    def add_to(self, app: web.Application) -> None:
        app.router.add_post(self.path, self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        source = self._source
        metrics.webhook_received(source)
        try:
            async with body_deadline(request):
                body = await request.read()
        except TimeoutError:
            return too_slow(request, source)
        except web.HTTPRequestEntityTooLarge:
            metrics.webhook_refused(source, "too_large")
            log.warning("webhook refused: body over the size limit")
            return web.json_response({"error": "body too large"}, status=413)
        headers = {
            name: request.headers.get(name, "") for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
        }
        try:
            self._verifier.verify(body, headers)
        except SignatureError as exc:
            metrics.webhook_refused(source, "signature")
            log.warning("webhook refused: %s", exc)
            return web.json_response({"error": "invalid signature"}, status=401)
        try:
            prediction = Prediction.model_validate_json(body)
        except ValidationError:
            metrics.webhook_refused(source, "malformed")
            log.warning("webhook %s: signed but malformed body", headers["webhook-id"])
            return web.json_response({"error": "malformed prediction"}, status=400)
        try:
            fresh = await self._handler(headers["webhook-id"], prediction)
        except Exception:
            metrics.webhook_refused(source, "error")
            log.exception("webhook %s for prediction %s failed", headers["webhook-id"], prediction.id)
            # 5xx makes the provider retry the final webhook; the poller is the safety net regardless.
            return web.json_response({"error": "internal error"}, status=500)
        return web.json_response({"ok": True, "duplicate": not fresh})
