"""Hostile HTTP for download tests: more servers on loopback (other ports), and a body that never ends.

``Servers`` starts aiohttp servers on ``127.0.0.1:<random port>`` that answer every GET with one handler
(a redirect target that records who came, the Discord simulator's CDN on another port...). ``Endless`` is a
handler that streams a body with no Content-Length, far larger than any limit, and counts what it got to
send before the client hung up: a client that stops at its limit while streaming leaves it far short.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from types import TracebackType

import aiohttp
from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Servers:
    """``async with Servers() as servers: url = await servers.start(handler)``; all stop at the end."""

    def __init__(self) -> None:
        self._runners: list[web.AppRunner] = []

    async def start(self, handler: Handler) -> str:
        async def handle(request: web.Request) -> web.StreamResponse:  # aiohttp takes coroutine functions only
            return await handler(request)

        app = web.Application()
        app.router.add_get("/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self._runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    async def __aenter__(self) -> Servers:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for runner in self._runners:
            await runner.cleanup()


class Endless:
    """A handler streaming ``total`` bytes of ``chunk`` (256 MiB by default) with no Content-Length."""

    def __init__(self, chunk: bytes = b"\0" * 65536, *, total: int = 256 * 1024 * 1024, content_type: str = "") -> None:
        self.chunk = chunk
        self.total = total
        self.headers = {"Content-Type": content_type} if content_type else {}
        self.sent = 0
        self.finished = asyncio.Event()  # set once the client hung up (or, for a client reading it all, at the end)

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers=self.headers)
        await response.prepare(request)
        try:
            with contextlib.suppress(ConnectionError, aiohttp.ClientConnectionResetError):
                while self.sent < self.total:
                    await response.write(self.chunk)
                    self.sent += len(self.chunk)
        finally:
            self.finished.set()
        return response

    async def hung_up(self, timeout_s: float = 30.0) -> int:
        """What was sent, once the client is gone."""
        async with asyncio.timeout(timeout_s):
            await self.finished.wait()
        return self.sent
