"""The CDN: stores attachment bytes and serves them at signed, expiring URLs.

URLs look like Discord's: ``{base}/attachments/{channel}/{attachment}/{filename}?ex=<hex>&is=<hex>&hm=<sig>&``
(``proxy_url`` uses ``{base}/media/attachments/...``). After ``ex`` (on the simulated clock) or with a wrong
signature the CDN answers 404, as Discord does. Every payload the simulator builds carries freshly signed
URLs, so re-fetching a message refreshes them.

``requests`` counts every request that reached it (a test can show nothing was downloaded), and
``answer_with`` makes it answer one file's downloads some other way (a redirect, an endless body).
"""

from __future__ import annotations

import hashlib
import hmac
import mimetypes
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import quote, unquote, urlsplit

from aiohttp import web

from .clock import SimClock
from .models import SimAttachment

#: Discord sets these from the extension; discord.py always uploads application/octet-stream.
_CONTENT_TYPES = {
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg",
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".webm": "audio/webm",
    ".mid": "audio/midi",
    ".midi": "audio/midi",
    ".txt": "text/plain; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".mp4": "video/mp4",
}


Answer = Callable[[web.Request], Awaitable[web.StreamResponse]]


def guess_content_type(filename: str) -> str:
    """Content type Discord would report for ``filename``."""
    dot = filename.rfind(".")
    ext = filename[dot:].lower() if dot >= 0 else ""
    if ext in _CONTENT_TYPES:
        return _CONTENT_TYPES[ext]
    guessed, _ = mimetypes.guess_type(filename)
    return guessed or "application/octet-stream"


class Cdn:
    """Attachment store plus the aiohttp handler for ``/attachments/...`` and ``/media/attachments/...``."""

    def __init__(self, clock: SimClock, *, url_lifetime_s: float = 86_400.0) -> None:
        self._clock = clock
        self.url_lifetime_s = url_lifetime_s
        self.base_url = ""
        self._files: dict[int, SimAttachment] = {}
        self._key = secrets.token_bytes(16)
        self.requests = 0  # every request that reached the CDN, answered or not
        self.downloads = 0
        self._answers: dict[str, Answer] = {}

    def add(self, attachment: SimAttachment) -> SimAttachment:
        self._files[attachment.id] = attachment
        return attachment

    def answer_with(self, filename: str, answer: Answer | None) -> None:
        """Tests: answer valid requests for attachments named ``filename`` with ``answer`` (a redirect, a body
        that lies about its size...) instead of their bytes; None restores the bytes."""
        if answer is None:
            self._answers.pop(filename, None)
        else:
            self._answers[filename] = answer

    def get(self, attachment_id: int) -> SimAttachment | None:
        return self._files.get(attachment_id)

    def _sign(self, path: str, ex: int, issued: int) -> str:
        msg = f"{path}:{ex:x}:{issued:x}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def _path(self, att: SimAttachment) -> str:
        return f"/attachments/{att.channel_id}/{att.id}/{quote(att.filename)}"

    def urls(self, att: SimAttachment) -> tuple[str, str]:
        """``(url, proxy_url)`` signed now, valid for ``url_lifetime_s``."""
        issued = int(self._clock.now())
        ex = issued + int(self.url_lifetime_s)
        path = self._path(att)
        query = f"?ex={ex:x}&is={issued:x}&hm={self._sign(path, ex, issued)}&"
        return f"{self.base_url}{path}{query}", f"{self.base_url}/media{path}{query}"

    def refresh(self, url: str) -> str | None:
        """A freshly signed URL for an attachment URL (signed or not); None if unknown."""
        parts = urlsplit(url).path.removeprefix("/media").split("/")
        if len(parts) != 5 or parts[1] != "attachments" or not parts[3].isdigit():
            return None
        att = self._files.get(int(parts[3]))
        return None if att is None else self.urls(att)[0]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        path = request.path.removeprefix("/media")
        parts = path.split("/")
        gone = web.Response(status=404, text="This content is no longer available.")
        if len(parts) != 5 or not parts[3].isdigit():
            return gone
        att = self._files.get(int(parts[3]))
        if att is None or str(att.channel_id) != parts[2] or unquote(parts[4]) != att.filename:
            return gone
        try:
            ex = int(request.query["ex"], 16)
            issued = int(request.query["is"], 16)
            signature = request.query["hm"]
        except (KeyError, ValueError):
            return gone
        expected = self._sign(self._path(att), ex, issued)
        if not hmac.compare_digest(signature.encode("utf-8", "surrogatepass"), expected.encode()):  # any text
            return gone
        if self._clock.now() >= ex:
            return gone
        self.downloads += 1
        answer = self._answers.get(att.filename)
        if answer is not None:
            return await answer(request)
        return web.Response(body=att.data, headers={"Content-Type": att.content_type})
