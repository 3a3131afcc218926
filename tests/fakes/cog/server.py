"""``FakeCog``: the aiohttp app, setup and health, its routes and error answers, and fault injection."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, cast

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel, ValidationError

from .openapi import openapi_document
from .outputs import _UploadFailed
from .predictions import CogRunner
from .records import CogPrediction, _now
from .responses import Fault, _json, _Reply, _unprocessable
from .validation import EVENTS, ParsedRequest, fastapi_errors

NOID_PREFIX = "cog-fake-noid-"


class FakeCog(CogRunner):
    """The fake model server. ``async with FakeCog() as cog:`` then point the client at ``cog.base_url``."""

    _label = "FakeCog"

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        routes = [
            ("GET", "/", self._h_root),
            ("GET", "/health-check", self._h_health),
            ("GET", "/openapi.json", self._h_openapi),
            ("GET", "/docs", self._h_docs),
            ("POST", "/predictions", self._h_predict),
            ("PUT", "/predictions/{prediction_id}", self._h_predict_idempotent),
            ("POST", "/predictions/{prediction_id}/cancel", self._h_cancel),
            ("POST", "/shutdown", self._h_shutdown),
        ]
        await self._serve(routes, client_max_size=64 * 1024 * 1024, handler_cancellation=False)

    async def close(self) -> None:
        tasks = [*self._tasks, *self._webhook_tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for pred in list(self.running.values()):
            pred.done.set()  # release sync handlers still waiting
        if self._runner is not None:
            await self._runner.cleanup()
        if self._client is not None:
            await self._client.close()
        self._client = self._runner = self._site = None

    # ------------------------------------------------------------ setup / health from tests

    @property
    def health(self) -> str:
        if self.defunct:
            return "DEFUNCT"
        if self.setup_status == "starting":
            return "STARTING"
        if self.setup_status == "failed":
            return "SETUP_FAILED"
        return "BUSY" if len(self.running) >= self.max_concurrency else "READY"

    def finish_setup(self, logs: str = "") -> None:
        """STARTING -> READY (setup succeeded)."""
        self._end_setup("succeeded", logs)

    def fail_setup(self, logs: str = "Traceback (most recent call last):\nRuntimeError: fake: setup failed\n") -> None:
        """STARTING -> SETUP_FAILED."""
        self._end_setup("failed", logs)

    def _end_setup(self, status: str, logs: str) -> None:
        if self.setup_status != "starting":
            raise RuntimeError(f"setup already {self.setup_status}")
        self.setup_status, self.setup_logs, self._setup_completed_at = status, logs, _now()
        self._notify()

    def set_defunct(self) -> None:
        """A fatal worker error: health says DEFUNCT from now on."""
        self.defunct = True
        self._notify()

    # ------------------------------------------------------------ errors and faults (the middleware is FakeServer's)

    async def _dispatch(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except _Reply as reply:
            return reply.response
        except web.HTTPNotFound:
            return _json({"detail": "Not Found"}, 404)
        except web.HTTPMethodNotAllowed as exc:
            return _json({"detail": "Method Not Allowed"}, 405, {"Allow": ", ".join(sorted(exc.allowed_methods))})

    def inject(
        self,
        *,
        method: str | None = None,
        path: str | None = None,
        status: int | None = 500,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        times: int | None = 1,
        delay_s: float = 0.0,
        drop: bool = False,
    ) -> Fault:
        """Answer the next ``times`` matching requests (None: forever) with a failure.

        ``path`` is a regex searched in the request path. ``status=None`` with ``delay_s`` delays and then
        answers normally. ``drop`` closes the connection unanswered (the request is not handled).
        """
        fault = Fault(method, path, status, body, dict(headers or {}), times, delay_s, drop)
        self.faults.append(fault)
        return fault

    # ------------------------------------------------------------ plain routes

    async def _h_root(self, request: web.Request) -> web.Response:
        return _json(
            {
                "cog_version": self.cog_version,
                "docs_url": "/docs",
                "openapi_url": "/openapi.json",
                "shutdown_url": "/shutdown",
                "healthcheck_url": "/health-check",
                "predictions_url": "/predictions",
                "predictions_idempotent_url": "/predictions/{prediction_id}",
                "predictions_cancel_url": "/predictions/{prediction_id}/cancel",
            }
        )

    async def _h_health(self, request: web.Request) -> web.Response:
        setup: dict[str, Any] = {}
        if self._setup_completed_at is not None:  # cog stores the setup result only once setup ends
            setup = {
                "started_at": self._setup_started_at.isoformat(),
                "completed_at": self._setup_completed_at.isoformat(),
                "logs": self.setup_logs,
                "status": self.setup_status,
            }
        return _json({"status": self.health, "setup": setup})

    async def _h_openapi(self, request: web.Request) -> web.Response:
        return _json(self.openapi())

    async def _h_docs(self, request: web.Request) -> web.Response:
        html = "<!DOCTYPE html><html><head><title>Cog - Swagger UI</title></head><body>fake docs</body></html>"
        return web.Response(text=html, content_type="text/html")

    async def _h_shutdown(self, request: web.Request) -> web.Response:
        self.shutdown_requested = True
        self._notify()
        self._spawn(self._stop_listening())
        return _json({})

    async def _stop_listening(self) -> None:
        if self._site is not None:
            await self._site.stop()
            self._site = None
        self._stopped = True
        self._notify()

    async def wait_for_shutdown(self, timeout: float = 5.0) -> None:
        """Wait until ``POST /shutdown`` has closed the listener (new connections are refused)."""
        await self._wait(lambda: True if self._stopped else None, timeout, "shutdown")

    def openapi(self) -> dict[str, Any]:
        """An OpenAPI 3.0.2 document shaped like cog's (Input/Output from the model)."""
        return openapi_document(self.model)

    # ------------------------------------------------------------ prediction routes

    async def _parse(self, request: web.Request, *, required: bool) -> ParsedRequest:
        """FastAPI's body handling: JSON errors and validation errors are 422 in ``detail`` form."""
        raw = await request.read()
        data: Any = None
        if raw:
            try:
                data = json.loads(raw)
            except ValueError as exc:
                pos = getattr(exc, "pos", 0)
                msg = getattr(exc, "msg", str(exc))
                err = {"type": "json_invalid", "loc": ["body", pos], "msg": "JSON decode error", "input": {}}
                raise _unprocessable([{**err, "ctx": {"error": msg}}]) from None
        if data is None:
            if required:
                raise _unprocessable([{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}])
            data = {}
        try:
            req = self.request_type.model_validate(data)
        except ValidationError as exc:
            raise _unprocessable(fastapi_errors(exc)) from None
        values = req.model_dump(by_alias=True)
        inp = cast(BaseModel | None, getattr(req, "input", None))
        created_at = cast(datetime | None, values["created_at"])
        events = values["webhook_events_filter"] or list(EVENTS)  # cog: `filter or default_events()`
        webhook = values["webhook"]
        return ParsedRequest(
            # cog's [compat] rule: a missing/null input becomes {} and is passed on unvalidated (echoed as {})
            input=inp.model_dump(by_alias=True) if inp is not None else {},
            model_input=inp.model_dump(by_alias=True, exclude_unset=True) if inp is not None else {},
            id=values["id"],
            created_at=created_at.isoformat() if created_at is not None else None,
            webhook=str(webhook) if webhook is not None else None,
            events=frozenset(str(e) for e in events),
            output_file_prefix=values["output_file_prefix"],
        )

    async def _h_predict(self, request: web.Request) -> web.Response:
        return await self._predict(request, await self._parse(request, required=False))

    async def _h_predict_idempotent(self, request: web.Request) -> web.Response:
        pid = request.match_info["prediction_id"]
        body = await self._parse(request, required=True)
        if body.id is not None and body.id != pid:
            msg = "prediction ID must match the ID supplied in the URL"
            raise _unprocessable([{"loc": ["body", "id"], "msg": msg, "type": "value_error"}])
        if (pred := self.running.get(pid)) is not None and pred.id == pid:
            return _json(pred.to_json(), 202)
        return await self._predict(request, replace(body, id=pid))

    async def _predict(self, request: web.Request, body: ParsedRequest) -> web.Response:
        respond_async = request.headers.get("Prefer") == "respond-async"  # exact match only, as cog
        if self.defunct or self.setup_status == "failed":
            return web.Response(status=500, text="Internal Server Error")
        busy = self.setup_status != "succeeded" or len(self.running) >= self.max_concurrency
        if busy or (body.id is not None and body.id in self.running):
            return _json({"detail": "Already running a prediction"}, 409)
        key = body.id
        while key is None or key in self.running:
            key = f"{NOID_PREFIX}{next(self._noid)}"
        trace = {k: v for k in ("traceparent", "tracestate") if (v := request.headers.get(k)) is not None}
        pred = CogPrediction(
            key=key,
            id=body.id,
            input=body.input,
            model_input=body.model_input,
            created_at=body.created_at,
            webhook=body.webhook,
            events=body.events,
            output_file_prefix=body.output_file_prefix,
            respond_async=respond_async,
            upload=respond_async and self.upload_url is not None,
            trace_headers=trace,
        )
        self.running[key] = pred
        self.history.append(pred)
        self._new_predictions.append(key)
        self._emit(pred, "start")
        self._notify()
        if respond_async:
            if self.auto_complete:
                self._spawn(self._run(pred))
            return _json(pred.to_json(), 202)
        if self.auto_complete:
            await self._run(pred)
        await pred.done.wait()
        response = pred.to_json()
        try:
            response["output"] = await self._sync_output(pred, pred.raw_output)
        except _UploadFailed:
            return web.Response(status=500, text="Internal Server Error")
        return _json(response)

    async def _h_cancel(self, request: web.Request) -> web.Response:
        pid = request.match_info["prediction_id"]
        pred = self.running.get(pid)
        if pred is None or pred.id != pid:
            return _json({}, 404)
        self._finish(pred, "canceled")
        return _json({})

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------ awaitable hooks

    async def wait_for_health(self, status: str, timeout: float = 5.0) -> None:
        await self._wait(lambda: True if self.health == status else None, timeout, f"health {status}")
