"""``FakeElevenLabs``: the aiohttp app, auth and error answers, fault injection (errors, drops, truncation, holds)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from tests.fakes._http import drop_connection

from .errors import ERRORS, ApiError, Invalid, api_error
from .faults import _TRUNCATE_AT, Fault, Hold
from .music import MusicRoutes
from .stems import StemRoutes
from .validation import ENDPOINTS


class FakeElevenLabs(MusicRoutes, StemRoutes):
    """The fake API. Use ``async with FakeElevenLabs() as fake:`` and point the client at ``base_url``."""

    _label = "FakeElevenLabs"
    _record_multipart_bodies = False  # the stem-separation handler reads the multipart body itself

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        routes = [
            *(("POST", self.prefix + path, self._h_generate) for path in ENDPOINTS),
            ("POST", f"{self.prefix}/v1/music/plan", self._h_plan),
            ("POST", f"{self.prefix}/v1/music/stem-separation", self._h_stems),
        ]
        # handler_cancellation: a client that disconnects cancels its handler, which records the abort.
        await self._serve(routes, client_max_size=256 * 1024 * 1024, handler_cancellation=True)

    async def close(self) -> None:
        self._closing = True
        for hold in self.holds:
            hold.release()
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self._client = self._runner = self._site = None

    # ------------------------------------------------------------ dispatch, faults

    async def _dispatch(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            key = request.headers.get("xi-api-key")
            if key is None:
                raise api_error("missing_api_key")
            if key != self.api_key:
                raise api_error("invalid_api_key")
            return await handler(request)
        except (ApiError, Invalid) as exc:
            return exc.response()
        except web.HTTPNotFound:
            return web.json_response({"detail": "Not Found"}, status=404)
        except web.HTTPMethodNotAllowed:
            return web.json_response({"detail": "Method Not Allowed"}, status=405)

    async def _answer_fault(self, fault: Fault, request: web.Request, handler: Handler) -> web.StreamResponse:
        if fault.drop:
            return drop_connection(request)
        if fault.truncate_at is not None:
            request[_TRUNCATE_AT] = fault.truncate_at
        if fault.status is None:
            return await self._dispatch(request, handler)
        body: Any = None
        if request.content_type == "application/json":
            try:
                body = json.loads(await request.read())
            except ValueError:
                body = None
        return fault.render(fault.status, body)

    def _fault(self, **kw: Any) -> Fault:
        defaults: dict[str, Any] = {
            "method": "POST",
            "path": None,
            "status": None,
            "body": None,
            "headers": {},
            "times": 1,
            "delay_s": 0.0,
            "drop": False,
            "code": None,
            "content_type": "text/html",
            "truncate_at": None,
            "suggestion": None,
        }
        fault = Fault(**(defaults | kw))
        self.faults.append(fault)
        return fault

    def inject(
        self,
        error: str | int = 500,
        *,
        path: str | None = None,
        method: str | None = "POST",
        retry_after: float | str | None = None,
        suggestion: Any = None,
        body: Any = None,
        content_type: str = "text/html",
        headers: Mapping[str, str] | None = None,
        times: int | None = 1,
        delay_s: float = 0.0,
    ) -> Fault:
        """Answer the next ``times`` matching requests (None: forever) with an error.

        ``error`` is a code from ``ERRORS`` (``"bad_prompt"``, ``"quota_exceeded"``, ``"system_busy"``...) or
        an HTTP status (its usual code; statuses without one, e.g. 502, get an HTML page). ``path`` is a regex
        searched in the request path. ``retry_after`` adds a ``Retry-After`` header. ``suggestion`` replaces
        the derived ``prompt_suggestion``/``composition_plan_suggestion``. ``body`` (JSON-able, or bytes/str
        sent as ``content_type``) replaces the whole body.
        """
        if isinstance(error, str):
            if error not in ERRORS:
                raise ValueError(f"unknown error code {error!r}; one of {sorted(ERRORS)}")
            status, code = ERRORS[error][0], error
        else:
            status, code = error, None
        all_headers = dict(headers or {})
        if retry_after is not None:
            all_headers["Retry-After"] = str(retry_after)
        return self._fault(
            method=method,
            path=path,
            status=status,
            body=body,
            headers=all_headers,
            times=times,
            delay_s=delay_s,
            code=code,
            content_type=content_type,
            suggestion=suggestion,
        )

    def drop(self, *, path: str | None = None, times: int | None = 1) -> Fault:
        """Close the connection of the next matching requests without answering."""
        return self._fault(path=path, times=times, drop=True)

    def truncate(self, at_bytes: int, *, path: str | None = None, times: int | None = 1) -> Fault:
        """Answer normally, but close the connection after ``at_bytes`` bytes of the body (mid-stream)."""
        return self._fault(path=path, times=times, truncate_at=at_bytes)

    def delay(self, seconds: float, *, path: str | None = None, times: int | None = 1) -> Fault:
        """Answer the next matching requests normally after ``seconds``."""
        return self._fault(path=path, times=times, delay_s=seconds)

    def hold(self, *, path: str | None = None, times: int | None = 1, after_chunks: int = 0) -> Hold:
        """Keep the next matching generation/stem requests in flight until ``Hold.release()``.

        With ``after_chunks=0`` the response has not started (no headers); with ``k > 0`` the headers and
        ``k`` body pieces (see ``stream_chunks``; every body is written in pieces) are out; a body with no
        more than ``k`` pieces is not held. A client that disconnects meanwhile is recorded in ``aborts`` (and
        its record's ``aborted``). Validation and auth errors are answered without holding.
        """
        hold = Hold(path, times, after_chunks)
        self.holds.append(hold)
        return hold
