"""The way back of a provider that reports per job (``WebhookRoute.PER_JOB``): its unsigned webhooks, and the
output files it uploads. Mounted for each such provider under its own name (:mod:`bot.web.routes`).

- ``POST /<provider>/webhooks/{job_id}/{token}``: a prediction update; the token is the job's own unguessable
  secret, so a forged or misdirected webhook is refused (401) and changes nothing.
- ``PUT /<provider>/uploads/{secret}/{filename}``: a server started with
  ``--upload-url <public>/<provider>/uploads/<secret>/`` (Cog's) PUTs each output file here with an
  ``X-Prediction-ID`` header. A wrong secret gets 403; the file is stored under that prediction and our own URL
  for it is returned in ``Location``, which the server reports as the output.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import BinaryIO

from aiohttp import web
from pydantic import ValidationError

from bot import metrics
from bot.providers.base import Prediction, job_webhooks_path, uploads_path
from bot.providers.uploads import UploadStore
from bot.tokens import same_secret
from bot.web.limits import body_deadline, too_slow

log = logging.getLogger(__name__)

# (job id, token, prediction) -> False if the token is not the job's
JobWebhookHandler = Callable[[str, str, Prediction], Awaitable[bool]]
# prediction id -> whether an active job is waiting for it
PredictionCheck = Callable[[str], Awaitable[bool]]


class JobWebhookView:
    """``POST /<provider>/webhooks/{job_id}/{token}``: a provider's webhook to a job's own URL."""

    def __init__(self, provider: str, on_webhook: JobWebhookHandler) -> None:
        self._source = provider  # how the metrics name it
        self._on_webhook = on_webhook
        self.path = f"{job_webhooks_path(provider)}/{{job_id}}/{{token}}"

    def add_to(self, app: web.Application) -> None:
        app.router.add_post(self.path, self.webhook)

    async def webhook(self, request: web.Request) -> web.Response:
        source = self._source
        metrics.webhook_received(source)
        job_id, token = request.match_info["job_id"], request.match_info["token"]
        try:
            async with body_deadline(request):
                body = await request.read()
        except TimeoutError:
            return too_slow(request, source)
        try:
            prediction = Prediction.model_validate_json(body)
        except ValidationError:
            metrics.webhook_refused(source, "malformed")
            return web.json_response({"error": "malformed prediction"}, status=400)
        try:
            known = await self._on_webhook(job_id, token, prediction)
        except Exception:
            metrics.webhook_refused(source, "error")
            log.exception("%s webhook for job %r failed", source, job_id[:32])
            return web.json_response({"error": "internal error"}, status=500)  # the final one is retried
        if not known:
            metrics.webhook_refused(source, "token")
            log.warning("%s webhook refused: bad token for job %r", source, job_id[:32])
            return web.json_response({"error": "unknown job or token"}, status=401)
        return web.json_response({"ok": True})


class UploadView:
    """``PUT /<provider>/uploads/{secret}/{filename}``: an output file a provider hands back (its
    :class:`UploadStore`; None: it isn't set up to, and every upload is refused)."""

    def __init__(
        self,
        provider: str,
        *,
        uploads: UploadStore | None,
        expects_upload: PredictionCheck,
        max_upload_bytes: int,
    ) -> None:
        self._source = f"{provider}_upload"  # how the metrics name it
        self._uploads = uploads
        self._expects_upload = expects_upload
        self._max_upload_bytes = max_upload_bytes
        self._max_files = uploads.max_files if uploads is not None else 0
        # Counting a prediction's files and claiming a new one happen under this lock, so parallel
        # uploads can't all slip under the cap.
        self._claiming = asyncio.Lock()
        self.path = f"{uploads_path(provider)}/{{secret}}/{{filename:.+}}"

    def add_to(self, app: web.Application) -> None:
        app.router.add_put(self.path, self.upload)

    async def upload(self, request: web.Request) -> web.Response:
        source = self._source
        metrics.webhook_received(source)
        secret = request.match_info["secret"]
        if self._uploads is None or not same_secret(secret, self._uploads.secret):
            metrics.webhook_refused(source, "secret")
            log.warning("%s refused: wrong secret", source)
            return web.json_response({"error": "forbidden"}, status=403)
        filename = request.match_info["filename"].strip("/").rsplit("/", 1)[-1]
        prediction_id = request.headers.get("X-Prediction-ID", "")
        if not (UploadStore.valid_name(filename) and UploadStore.valid_name(prediction_id)):
            metrics.webhook_refused(source, "name")
            return web.json_response({"error": "missing or unsafe X-Prediction-ID or file name"}, status=400)
        if not await self._expects_upload(prediction_id):
            metrics.webhook_refused(source, "unexpected")
            return web.json_response({"error": "no job is waiting for that prediction"}, status=404)
        if request.content_length is not None and request.content_length > self._max_upload_bytes:
            metrics.webhook_refused(source, "too_large")
            return web.json_response({"error": "too large"}, status=413)
        path = self._uploads.path_for(prediction_id, filename)
        part = path.with_name(path.name + ".part")
        size = 0
        async with self._claiming:
            handle = await asyncio.to_thread(_claim, part, self._max_files)
        if handle is None:
            metrics.webhook_refused(source, "too_many")
            log.warning("%s refused: prediction %s already has %d files", source, prediction_id, self._max_files)
            return web.json_response({"error": f"at most {self._max_files} files per prediction"}, status=413)
        try:
            async with body_deadline(request):
                async for chunk in request.content.iter_chunked(256 * 1024):
                    size += len(chunk)
                    if size > self._max_upload_bytes:
                        metrics.webhook_refused(source, "too_large")
                        return web.json_response({"error": "too large"}, status=413)
                    await asyncio.to_thread(handle.write, chunk)
        except TimeoutError:
            size = -1  # incomplete: the part file is thrown away below
            return too_slow(request, source)
        finally:
            await asyncio.to_thread(handle.close)
            if size < 0 or size > self._max_upload_bytes or request.transport is None:
                with contextlib.suppress(FileNotFoundError):
                    await asyncio.to_thread(part.unlink)
        await asyncio.to_thread(part.replace, path)
        location = self._uploads.public_url(prediction_id, filename)
        log.info("stored %s %s for prediction %s (%d bytes)", source, filename, prediction_id, size)
        return web.json_response({"ok": True}, status=201, headers={"Location": location})


def _claim(part: Path, max_files: int) -> BinaryIO | None:
    """Open ``part`` for writing unless its prediction's folder already holds ``max_files`` files (finished
    or being written; the same name again replaces its file and counts once)."""
    folder = part.parent
    folder.mkdir(parents=True, exist_ok=True)
    names = {entry.name.removesuffix(".part") for entry in folder.iterdir()}
    if part.name.removesuffix(".part") not in names and len(names) >= max_files:
        return None
    return part.open("wb")
