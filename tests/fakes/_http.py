"""The HTTP plumbing the fake Replicate API (replicate/), Cog server (cog/) and ElevenLabs API (elevenlabs/) share.

The fakes are real aiohttp servers on ``127.0.0.1:<random port>`` that record every request, answer injected
faults and let tests synchronise by awaiting hooks, never by sleeping; Replicate and Cog also deliver webhooks in
the background (one prediction's in order). ``FakeServer`` holds that common part; each fake keeps what differs:
its routes and error bodies (``_dispatch``), a fault's default answer (``Fault.response``), its ``inject``
options, and how webhooks are built, retried and recorded.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Self, TypeVar

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import CIMultiDict

T = TypeVar("T")
FaultT = TypeVar("FaultT", bound="Fault")


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    json: Any  # parsed JSON body, or None
    body: bytes  # FakeReplicate: b"" for multipart uploads
    at: float = field(default_factory=time.perf_counter)  # when it arrived (perf_counter; for the benchmark)


@dataclass
class Fault(ABC):
    """An injected failure; see the fake's ``inject``. ``hits`` counts the requests it answered."""

    method: str | None
    path: str | None
    status: int | None
    body: Any
    headers: dict[str, str]
    times: int | None
    delay_s: float
    drop: bool
    hits: int = field(default=0, kw_only=True)
    # Picks which of the requests matching the other filters fail (e.g. a seeded random share); asked last,
    # once per such request, with the request as recorded.
    when: Callable[[RecordedRequest], bool] | None = field(default=None, kw_only=True)

    def matches(self, request: web.Request, recorded: RecordedRequest | None = None) -> bool:
        return (
            (self.times is None or self.hits < self.times)
            and (self.method is None or self.method.upper() == request.method)
            and (self.path is None or re.search(self.path, request.path) is not None)
            and (self.when is None or (recorded is not None and self.when(recorded)))
        )

    @abstractmethod
    def response(self, status: int) -> web.Response:
        """The injected answer: ``body`` with ``headers``, or the fake's own error body when ``body`` is None."""


def drop_connection(request: web.Request) -> web.Response:
    """Close the connection unanswered; the response returned never reaches the client."""
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=500)


class FakeServer(ABC, Generic[FaultT]):
    """The common part of a fake server: lifecycle, request log, faults, awaitable hooks, webhook plumbing."""

    _label: ClassVar[str]  # the fake's name in error messages
    _record_multipart_bodies: ClassVar[bool] = True  # False: multipart requests are recorded with body b""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.faults: list[FaultT] = []
        self._claimed_requests: set[int] = set()
        self._tick = asyncio.Event()
        self._webhook_tasks: set[asyncio.Task[None]] = set()
        self._webhook_tail: dict[str, asyncio.Task[None]] = {}
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._client: aiohttp.ClientSession | None = None
        self._port = 0

    # ------------------------------------------------------------ lifecycle

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _serve(
        self, routes: Iterable[tuple[str, str, Handler]], *, client_max_size: int, **runner_options: Any
    ) -> None:
        """Serve ``routes`` (method, path, handler) behind ``_middleware`` on 127.0.0.1 at a free port.

        Also opens the client session that the fake's outgoing requests (webhooks, file fetches) use.
        """
        app = web.Application(middlewares=[self._middleware], client_max_size=client_max_size)
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
        self._runner = web.AppRunner(app, shutdown_timeout=0.25, access_log=None, **runner_options)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await self._site.start()
        self._port = self._runner.addresses[0][1]
        self._client = aiohttp.ClientSession()

    @property
    def _http(self) -> aiohttp.ClientSession:
        if self._client is None:
            raise RuntimeError(f"{self._label} is not started")
        return self._client

    # ------------------------------------------------------------ middleware: record, faults

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        recorded = await self._record(request)
        fault = next((f for f in self.faults if f.matches(request, recorded)), None)
        if fault is None:
            return await self._dispatch(request, handler)
        fault.hits += 1
        if fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        return await self._answer_fault(fault, request, handler)

    async def _record(self, request: web.Request) -> RecordedRequest:
        skip = not self._record_multipart_bodies and request.content_type.startswith("multipart/")
        body = b"" if skip else await request.read()
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        headers = CIMultiDict(request.headers)
        recorded = RecordedRequest(request.method, request.path, dict(request.query), headers, parsed, body)
        self.requests.append(recorded)
        self._notify()
        return recorded

    async def _answer_fault(self, fault: FaultT, request: web.Request, handler: Handler) -> web.StreamResponse:
        """A matching fault's answer (after its delay): dropped, its status, or handled normally."""
        if fault.drop:
            return drop_connection(request)
        if fault.status is not None:
            return fault.response(fault.status)
        return await self._dispatch(request, handler)

    @abstractmethod
    async def _dispatch(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Handle a request normally, turning the fake's errors into its error responses."""

    # ------------------------------------------------------------ webhooks

    def _chain(self, key: str, deliver: Callable[[], Awaitable[None]]) -> None:
        """Run ``deliver()`` in the background, after the earlier deliveries chained under the same ``key``."""
        after = self._webhook_tail.get(key)

        async def run() -> None:
            if after is not None:
                await asyncio.wait([after])
            await deliver()

        task = asyncio.create_task(run())
        self._webhook_tail[key] = task
        self._webhook_tasks.add(task)
        task.add_done_callback(self._webhook_tasks.discard)

    async def _post(self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> int | None:
        """POST without following redirects: the status code, or None on a connection error or timeout."""
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        try:
            async with self._http.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False) as r:
                await r.read()
                return r.status
        except (aiohttp.ClientError, TimeoutError):
            return None

    # ------------------------------------------------------------ awaitable hooks

    def _notify(self) -> None:
        self._tick.set()
        self._tick = asyncio.Event()

    async def _wait(self, check: Callable[[], T | None], timeout: float, what: str) -> T:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if (found := check()) is not None:
                        return found
                    await self._tick.wait()
        except TimeoutError:
            raise TimeoutError(f"{self._label}: no {what} within {timeout} s") from None

    def _log(self, log: list[T], new: deque[T], item: T) -> None:
        """Record ``item`` in ``log`` and in ``new`` (for ``_next``), and wake the waiters."""
        log.append(item)
        new.append(item)
        self._notify()

    async def _next(self, new: deque[T], timeout: float, what: str) -> T:
        """The oldest item of ``new`` not yet returned, waiting for one if there is none."""
        return await self._wait(lambda: new.popleft() if new else None, timeout, what)

    async def next_request(
        self, method: str | None = None, path_prefix: str | None = None, timeout: float = 5.0
    ) -> RecordedRequest:
        """The oldest recorded request matching the filters not yet returned by this method."""

        def check() -> RecordedRequest | None:
            for i, r in enumerate(self.requests):
                if i in self._claimed_requests or (method is not None and r.method != method.upper()):
                    continue
                if path_prefix is None or r.path.startswith(path_prefix):
                    self._claimed_requests.add(i)
                    return r
            return None

        return await self._wait(check, timeout, f"request {method or '*'} {path_prefix or ''}")

    async def request_at(self, index: int, timeout: float = 5.0) -> RecordedRequest:
        """The ``index``-th request recorded (from 0), once it has arrived: to read every request in order."""
        return await self._wait(
            lambda: self.requests[index] if index < len(self.requests) else None, timeout, f"request #{index}"
        )

    def count(self, method: str | None = None, path_prefix: str = "") -> int:
        """How many requests were recorded with this method and a path starting with ``path_prefix``."""
        return sum(
            (method is None or r.method == method.upper()) and r.path.startswith(path_prefix) for r in self.requests
        )
