"""Output files as cog reports them: data URLs, server-local paths, or uploads.

Async predictions with ``--upload-url`` PUT each file there raw (retried on 408/429/5xx); sync ones with
``output_file_prefix`` PUT it multipart, once.
"""

from __future__ import annotations

import asyncio
import mimetypes
import posixpath
import secrets
import string
from base64 import b64encode
from collections.abc import Iterable
from typing import Any, cast
from urllib.parse import urlparse

import aiohttp

from tests.fakes.models import OutputFile

from .records import CogPrediction, UploadAttempt
from .state import REQUESTS_UA, CogState
from .webhooks import _backoff

RETRY_UPLOAD_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Observed on cog 0.13.7 (mimetypes on its host); other extensions fall back to Python's mimetypes.
_MIME = {
    ".wav": "audio/x-wav",
    ".mp3": "audio/mpeg",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".json": "application/json",
    ".txt": "text/plain",
}


def guess_mime(filename: str) -> str | None:
    """The MIME type cog derives from a file name (``None`` when unknown; cog then writes ``data:None``)."""
    ext = posixpath.splitext(filename)[1].lower()
    return _MIME.get(ext) or mimetypes.guess_type(filename)[0]


class _UploadFailed(Exception):
    pass


class CogOutputs(CogState):
    """Turns a model's ``OutputFile`` values into what cog reports, uploading them where asked."""

    async def _sync_output(self, pred: CogPrediction, value: Any) -> Any:
        """cog's sync ``upload_files``: data URLs, or a multipart PUT to ``output_file_prefix`` + name."""
        if isinstance(value, OutputFile):
            name = posixpath.basename(value.name)
            if pred.output_file_prefix is None:
                return f"data:{guess_mime(name)};base64,{b64encode(value.data).decode()}"
            return await self._put_multipart(pred, pred.output_file_prefix + name, name, value.data)
        if isinstance(value, dict):
            return {k: await self._sync_output(pred, v) for k, v in cast(dict[str, Any], value).items()}
        if isinstance(value, list | tuple):
            return [await self._sync_output(pred, v) for v in cast(Iterable[Any], value)]
        return value

    def _local_output(self, pred: CogPrediction, value: Any) -> Any:
        """Files as the server-local paths cog reports when it has nowhere to upload them."""
        if isinstance(value, OutputFile):
            tmp = "".join(secrets.choice(string.ascii_lowercase + string.digits + "_") for _ in range(8))
            path = f"/tmp/tmp{tmp}/{posixpath.basename(value.name)}"  # noqa: S108 - a fake path, never written
            pred.local_paths[path] = value
            return path
        if isinstance(value, dict):
            return {k: self._local_output(pred, v) for k, v in cast(dict[str, Any], value).items()}
        if isinstance(value, list | tuple):
            return [self._local_output(pred, v) for v in cast(Iterable[Any], value)]
        return value

    async def _upload_output(self, pred: CogPrediction, value: Any) -> Any:
        if isinstance(value, OutputFile):
            return await self._put_raw(pred, value)
        if isinstance(value, dict):
            return {k: await self._upload_output(pred, v) for k, v in cast(dict[str, Any], value).items()}
        if isinstance(value, list | tuple):
            return [await self._upload_output(pred, v) for v in cast(Iterable[Any], value)]
        return value

    async def _put_raw(self, pred: CogPrediction, out: OutputFile) -> str:
        """``put_file_to_signed_endpoint``: raw PUT to ``<upload_url>/<name>``, retried on 408/429/5xx."""
        base = self.upload_url or ""
        name = posixpath.basename(out.name)
        url = (base if base.endswith("/") else base + "/") + name
        headers = {"User-Agent": self.user_agent, **pred.trace_headers}
        if (mime := guess_mime(name)) is not None:
            headers["Content-Type"] = mime
        if pred.id is not None:
            headers["X-Prediction-ID"] = pred.id
        skip = () if mime is not None else ("Content-Type",)
        timeout = aiohttp.ClientTimeout(total=self.upload_timeout_s)
        attempts = 1 + self.upload_retries
        for attempt in range(1, attempts + 1):
            status: int | None = None
            final = url
            try:
                async with self._http.put(
                    url, data=out.data, headers=headers, skip_auto_headers=skip, timeout=timeout
                ) as resp:
                    await resp.read()
                    status, final = resp.status, resp.headers.get("Location") or str(resp.url)
            except (aiohttp.ClientError, TimeoutError):
                status = None
            self._record_upload(UploadAttempt(url, status, headers, len(out.data), pred.key, attempt, False))
            if status is not None and status < 400:
                return urlparse(final)._replace(query="").geturl()  # strip any signing query string
            if status is not None and status not in RETRY_UPLOAD_STATUSES:
                break
            if attempt < attempts:
                await asyncio.sleep(_backoff(attempt, self.upload_backoff_s, 120.0))
        raise _UploadFailed(f"upload of {name} to {url} failed")

    async def _put_multipart(self, pred: CogPrediction, url: str, name: str, data: bytes) -> str:
        """Sync ``output_file_prefix``: ``requests.put(url, files={"file": fh})``, no retries; output is ``url``."""
        form = aiohttp.FormData()
        form.add_field("file", data, filename=name)
        headers = {"User-Agent": REQUESTS_UA, **pred.trace_headers}
        status: int | None = None
        try:
            timeout = aiohttp.ClientTimeout(total=5.0)
            async with self._http.put(url, data=form, headers=headers, timeout=timeout) as resp:
                await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError):
            status = None
        self._record_upload(UploadAttempt(url, status, headers, len(data), pred.key, 1, True))
        if status is None or status >= 400:
            raise _UploadFailed(f"upload of {name} to {url} failed")
        return url

    def _record_upload(self, attempt: UploadAttempt) -> None:
        self._log(self.uploads, self._new_uploads, attempt)

    # ------------------------------------------------------------ awaitable hooks

    async def next_upload(self, timeout: float = 5.0) -> UploadAttempt:
        """The next output upload attempt (each returned once, in order)."""
        return await self._next(self._new_uploads, timeout, "upload")
