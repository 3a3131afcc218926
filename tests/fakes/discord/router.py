"""REST plumbing: route matching, auth, injected faults, schema validation and the request log."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from . import errors
from .clock import SimClock
from .errors import ApiError, merge_errors
from .validation import has_schema, validate_request
from .voice import VOICE_BODY_ERRORS
from .waiting import Journal
from .wire import RequestBody, UploadedFile, error_response, json_response, read_body

API_PREFIX = "/api/v10"
_RECEIVED = web.RequestKey("received_s", float)
_BODY_ERRORS = (errors.INVALID_FORM_BODY, errors.EMPTY_MESSAGE, *VOICE_BODY_ERRORS)


@dataclass(frozen=True)
class RestCall:
    """One request the bot made, with the simulator's answer. ``route`` is e.g.
    ``"POST /channels/{channel_id}/messages"`` (path templates as in the OpenAPI spec)."""

    seq: int
    method: str
    route: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    files: list[UploadedFile]
    status: int
    response: Any
    authorized: bool
    at: float  # simulated clock
    wall_s: float = field(default_factory=time.monotonic)  # real time, for rate assertions
    received_s: float = 0.0  # time.perf_counter() when its headers arrived, before the body (the benchmark)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def error_code(self) -> int | None:
        return self.response.get("code") if isinstance(self.response, dict) and not self.ok else None

    def __str__(self) -> str:
        code = f" code={self.error_code}" if self.error_code is not None else ""
        return f"#{self.seq} {self.route} -> {self.status}{code}"


@dataclass(frozen=True)
class ValidationFailure:
    """A request the simulator rejected for its body (400/50035, 50006, or a voice message's 50159-50162)."""

    route: str
    body: Any
    code: int
    errors: dict[str, Any] | None

    def __str__(self) -> str:
        return f"{self.route}: {self.code} {self.errors}"


@dataclass
class Reply:
    data: Any = None
    status: int = 200


@dataclass
class Ctx:
    request: web.Request
    params: dict[str, str]
    body: RequestBody

    @property
    def payload(self) -> dict[str, Any]:
        return self.body.payload if isinstance(self.body.payload, dict) else {}

    @property
    def query(self) -> dict[str, str]:
        return dict(self.request.query)


Handler = Callable[[Ctx], Awaitable[Reply]]
#: body rules beyond the schema: (payload, number of files) -> nested ``errors`` ({} if fine)
Rules = Callable[[Any, int], dict[str, Any]]


@dataclass
class _Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: Handler
    auth: bool
    rules: Rules | None

    @property
    def key(self) -> str:
        return f"{self.method} {self.template}"


@dataclass
class Injection:
    """A fault served instead of the real answer for the next ``times`` matching requests (None: all).

    ``predicate`` sees the raw request; ``when`` sees it parsed (route params and body, e.g. a nonce or a
    webhook token) and picks which matching requests fail. ``hits`` counts the requests it answered.
    """

    route: str | None
    error: ApiError
    times: int | None
    predicate: Callable[[web.Request], bool] | None = field(default=None)
    when: Callable[[Ctx], bool] | None = field(default=None)
    hits: int = 0


class Router:
    """Matches ``/api/v10/...`` requests to handlers and records every call."""

    def __init__(self, clock: SimClock, token: str) -> None:
        self._clock = clock
        self._token = token
        self._routes: list[_Route] = []
        self.injections: list[Injection] = []
        self.calls: Journal[RestCall] = Journal("REST calls", str)
        self.validation_failures: list[ValidationFailure] = []
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def add(
        self, method: str, template: str, handler: Handler, *, auth: bool = True, rules: Rules | None = None
    ) -> None:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
        self._routes.append(_Route(method, template, re.compile(f"^{regex}$"), handler, auth, rules))

    def inject(self, injection: Injection) -> None:
        """Queue a fault; a route the simulator does not serve is a test bug, so it is refused loudly."""
        known = {f"{r.method} {r.template}" for r in self._routes}
        if injection.route is not None and injection.route not in known:
            raise ValueError(f"no such route {injection.route!r}; known routes: {sorted(known)}")
        self.injections.append(injection)

    def _match(self, method: str, path: str) -> tuple[_Route | None, dict[str, str], bool]:
        path_exists = False
        for route in self._routes:
            m = route.pattern.match(path)
            if m is None:
                continue
            path_exists = True
            if route.method == method:
                return route, m.groupdict(), True
        return None, {}, path_exists

    def _injected(
        self, route: _Route, request: web.Request, params: dict[str, str], body: RequestBody
    ) -> ApiError | None:
        for inj in self.injections:
            if (
                (inj.times is None or inj.times > 0)
                and inj.route in (None, route.key)
                and (inj.predicate is None or inj.predicate(request))
                and (inj.when is None or inj.when(Ctx(request, params, body)))
            ):
                if inj.times is not None:
                    inj.times -= 1
                inj.hits += 1
                return inj.error
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Answer one request, writing the whole response before counting it as done (see :meth:`idle`)."""
        request[_RECEIVED] = time.perf_counter()
        self._in_flight += 1
        self._idle.clear()
        try:
            response = await self._answer(request)
            await response.prepare(request)
            await response.write_eof()
            return response
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def idle(self) -> None:
        """Until no request is being answered: every response so far is on the wire."""
        await self._idle.wait()

    async def _answer(self, request: web.Request) -> web.Response:
        path = request.path.removeprefix(API_PREFIX)
        route, params, path_exists = self._match(request.method, path)
        body = RequestBody()
        key = f"{request.method} {route.template if route else path}"
        authorized = request.headers.get("Authorization") == f"Bot {self._token}"
        try:
            if route is None:
                raise errors.method_not_allowed() if path_exists else errors.not_found_route()
            if route.auth and not authorized:
                raise errors.unauthorized()
            body = await read_body(request)
            injected = self._injected(route, request, params, body)
            if injected is not None:
                raise injected
            self._validate(route, body)
            reply = await route.handler(Ctx(request, params, body))
        except ApiError as exc:
            if exc.code in _BODY_ERRORS and exc.status == 400:
                self.validation_failures.append(ValidationFailure(key, body.payload, exc.code, exc.errors))
            self._log(request, key, params, body, exc.status, exc.body(), authorized)
            return error_response(exc)
        self._log(request, key, params, body, reply.status, reply.data, authorized)
        if reply.status == 204:
            return web.Response(status=204)
        return json_response(reply.data, status=reply.status)

    def _validate(self, route: _Route, body: RequestBody) -> None:
        """Schema errors and the route's own rules, reported together as one 400/50035."""
        payload = body.payload
        if payload is None and body.multipart:
            payload = {}
        if payload is None:
            return
        problems: dict[str, Any] = {}
        if route.rules is not None:
            merge_errors(problems, route.rules(payload, len(body.files)))
        if has_schema(route.template, route.method):
            merge_errors(problems, validate_request(route.template, route.method, payload))
        if problems:
            raise errors.invalid_form_body(problems)

    def _log(
        self,
        request: web.Request,
        key: str,
        params: dict[str, str],
        body: RequestBody,
        status: int,
        response: Any,
        authorized: bool,
    ) -> None:
        call = RestCall(
            seq=len(self.calls),
            method=request.method,
            route=key,
            path=request.path,
            params=params,
            query=dict(request.query),
            body=body.payload,
            files=body.files,
            status=status,
            response=response,
            authorized=authorized,
            at=self._clock.now(),
            received_s=request.get(_RECEIVED, 0.0),
        )
        self.calls.append(call)
