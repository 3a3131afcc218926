"""Injected failures: error answers by code or status (with derived suggestions); holds keep requests in flight."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from aiohttp import web

from tests.fakes import _http

from .errors import _CODE_FOR_STATUS, error_detail
from .plans import derive_plan
from .records import Transfer
from .schemas import MAX_LENGTH_MS, MIN_LENGTH_MS, MODEL_IDS
from .validation import _plan_errors

_TRUNCATE_AT = web.RequestKey("encore_fake_truncate_at", int)


@dataclass
class Fault(_http.Fault):
    """An injected failure; see ``FakeElevenLabs.inject``. ``hits`` counts the requests it answered."""

    code: str | None  # an ERRORS key, or None for a raw status/body
    content_type: str
    truncate_at: int | None
    suggestion: Any

    def response(self, status: int) -> web.Response:
        return self.render(status, None)

    def render(self, status: int, request_body: Any) -> web.Response:
        if self.body is not None:
            if isinstance(self.body, bytes | str):
                raw = self.body.encode() if isinstance(self.body, str) else self.body
                return web.Response(status=status, body=raw, headers=self.headers, content_type=self.content_type)
            return web.json_response(self.body, status=status, headers=self.headers)
        code = self.code or _CODE_FOR_STATUS.get(status)
        if code is None:  # e.g. 502 from a proxy in front of the API
            phrase = HTTPStatus(status).phrase
            html = f"<html><body><h1>{status} {phrase}</h1></body></html>"
            return web.Response(status=status, text=html, headers=self.headers, content_type="text/html")
        detail = error_detail(code)
        if code == "bad_prompt":
            prompt = request_body.get("prompt") if isinstance(request_body, dict) else None
            suggestion = self.suggestion or f"an original song inspired by: {prompt or 'your idea'}"[:4100]
            detail["data"] = {"prompt_suggestion": suggestion}
        elif code == "bad_composition_plan":
            detail["data"] = {"composition_plan_suggestion": self.suggestion or _suggested_plan(request_body)}
        return web.json_response({"detail": detail}, status=status, headers=self.headers)


def _suggested_plan(body: Any) -> dict[str, Any]:
    """A full valid plan for the request's model: its own plan if valid, else one derived from its prompt."""
    body = body if isinstance(body, dict) else {}
    model_id = body.get("model_id") if body.get("model_id") in MODEL_IDS else "music_v1"
    plan = body.get("composition_plan") or body.get("source_composition_plan")
    if plan is not None and not _plan_errors(plan, model_id, []):
        return plan
    prompt = body.get("prompt") if isinstance(body.get("prompt"), str) else "an original song"
    length = body.get("music_length_ms")
    length = length if isinstance(length, int) and MIN_LENGTH_MS <= length <= MAX_LENGTH_MS else 30_000
    return derive_plan(prompt, length, model_id)


@dataclass(eq=False)
class Hold:
    """Keeps matching requests in flight until ``release()``; see ``FakeElevenLabs.hold``."""

    path: str | None
    times: int | None
    after_chunks: int
    hits: int = 0
    held: list[Transfer] = field(default_factory=list)
    _released: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _queue: asyncio.Queue[Transfer] = field(default_factory=asyncio.Queue, repr=False)

    def matches(self, request: web.Request) -> bool:
        return (self.times is None or self.hits < self.times) and (
            self.path is None or re.search(self.path, request.path) is not None
        )

    def release(self) -> None:
        """Let every held request (and later matching ones) go on."""
        self._released.set()

    @property
    def released(self) -> bool:
        return self._released.is_set()

    async def wait_held(self, timeout: float = 5.0) -> Transfer:
        """The next request this hold stopped (a Generation or a Separation), waiting for one."""
        try:
            async with asyncio.timeout(timeout):
                return await self._queue.get()
        except TimeoutError:
            raise TimeoutError(f"FakeElevenLabs: no request held within {timeout} s") from None

    async def _hold(self, transfer: Transfer) -> None:
        self.held.append(transfer)
        self._queue.put_nowait(transfer)
        await self._released.wait()
