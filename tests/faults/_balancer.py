"""A small load balancer on loopback, in front of several Encore processes' web servers.

Replicate posts every webhook to one public URL; behind it, a load balancer hands each request to one of the
processes. This one does what a real one (nginx, HAProxy, a cloud balancer) does by default, and no more:

* round robin over the backends, one request each in turn;
* a health check: ``GET /healthz`` on every backend every ``health_interval_s``; a backend that doesn't answer
  200 is skipped until it does again (if none is healthy, all are tried, as nginx does);
* a backend that refuses the connection (its process is dead) is marked down and the request goes to the next
  one: nothing was sent, so trying again is safe (nginx's ``proxy_next_upstream error``);
* a request that reached a backend which then failed to answer (killed mid-request) is answered 502, not
  retried elsewhere: a POST is not idempotent, and the sender (Replicate) retries its webhook itself.

Each backend's share is counted in :attr:`Balancer.forwarded`, by name.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass

import aiohttp
from aiohttp import web

# Headers that describe one hop, not the request: never passed on (RFC 9110 section 7.6.1).
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "host",
        "content-length",
    }
)


@dataclass
class Backend:
    name: str
    port: int
    healthy: bool = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Balancer:
    def __init__(
        self, backends: list[Backend], *, port: int = 0, health_interval_s: float = 0.25, timeout_s: float = 30.0
    ) -> None:
        """``port``: where to listen (0: any free port, known once started)."""
        self.backends = backends
        self.health_interval_s = health_interval_s
        self.timeout_s = timeout_s
        self.forwarded: Counter[str] = Counter()  # requests each backend answered
        self.failed_over = 0  # requests a refused connection sent on to the next backend
        self.bad_gateway = 0  # requests answered 502: their backend died under them, or none was reachable
        self._next = 0
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._health: asyncio.Task[None] | None = None
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        # No pooled connections: a pooled connection to a process that has since been killed would fail in a way
        # that looks like "died mid-request", where a real balancer sees a refused connect.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True),
            timeout=aiohttp.ClientTimeout(total=self.timeout_s, connect=2.0),
        )
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self._health = asyncio.create_task(self._check_health(), name="balancer-health")

    async def close(self) -> None:
        if self._health is not None:
            self._health.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def _order(self) -> list[Backend]:
        """The backends to try for the next request: the healthy ones from the next in turn, then the rest."""
        start = self._next
        self._next = (self._next + 1) % len(self.backends)
        turn = self.backends[start:] + self.backends[:start]
        healthy = [b for b in turn if b.healthy]
        return healthy + [b for b in turn if not b.healthy]

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        for backend in self._order():
            try:
                async with self._session.request(
                    request.method, backend.url + request.path_qs, data=body, headers=headers, allow_redirects=False
                ) as answer:
                    content = await answer.read()
                    status, content_type = answer.status, answer.headers.get("Content-Type")
            except aiohttp.ClientConnectorError:
                backend.healthy = False  # nothing reached it: the next one may take the request
                self.failed_over += 1
                continue
            except (aiohttp.ClientError, TimeoutError):
                self.bad_gateway += 1  # it had the request and died (or hung): not ours to send twice
                return web.Response(status=502, text="bad gateway: the backend failed while answering")
            self.forwarded[backend.name] += 1
            reply = web.Response(status=status, body=content)
            if content_type:
                reply.headers["Content-Type"] = content_type
            return reply
        self.bad_gateway += 1
        return web.Response(status=502, text="bad gateway: no backend is reachable")

    async def _check_health(self) -> None:
        assert self._session is not None
        while True:
            for backend in self.backends:
                try:
                    async with self._session.get(
                        backend.url + "/healthz", timeout=aiohttp.ClientTimeout(total=2.0)
                    ) as answer:
                        backend.healthy = answer.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    backend.healthy = False
            await asyncio.sleep(self.health_interval_s)  # the balancer's own check interval, not a test's wait
