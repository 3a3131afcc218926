"""``FakeReplicate``: the aiohttp app, its routes, auth and error answers, and fault injection."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from tests.fakes._http import RecordedRequest, drop_connection
from tests.fakes.models import FakeModel, invalid_fields

from .errors import PROBLEM, Fault, Problem, _bad_request, _not_found, _validation_problem
from .files import FileRoutes
from .predictions import PredictionEngine
from .records import Prediction, _new_id
from .validation import _parse_cancel_after, _parse_prefer, _webhook_url_ok, spec_validator

_CREATE_PATHS = re.compile(r"^/v1/(predictions|models/[^/]+/[^/]+/predictions|deployments/[^/]+/[^/]+/predictions)$")


def _rate_kind(request: web.Request) -> str:
    """Which of the account's limits a call counts against: creating a prediction, or any other call."""
    return "create" if request.method == "POST" and _CREATE_PATHS.match(request.path) else "other"


class FakeReplicate(PredictionEngine, FileRoutes):
    """The fake API server. Use ``async with FakeReplicate() as fake:`` and point the client at ``base_url``."""

    _label = "FakeReplicate"
    _record_multipart_bodies = False

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        routes = [
            ("POST", "/v1/predictions", self._h_create),
            ("GET", "/v1/predictions", self._h_list),
            ("GET", "/v1/predictions/{pid}", self._h_get),
            ("POST", "/v1/predictions/{pid}/cancel", self._h_cancel),
            ("GET", "/v1/models/{owner}/{name}", self._h_model),
            ("GET", "/v1/models/{owner}/{name}/versions/{vid}", self._h_version),
            ("POST", "/v1/models/{owner}/{name}/predictions", self._h_model_create),
            ("GET", "/v1/webhooks/default/secret", self._h_secret),
            ("POST", "/v1/files", self._h_file_create),
            ("GET", "/v1/files", self._h_file_list),
            ("GET", "/v1/files/{fid}", self._h_file_get),
            ("DELETE", "/v1/files/{fid}", self._h_file_delete),
            ("GET", "/v1/files/{fid}/download", self._h_file_download),
            ("GET", "/delivery/{pid}/{name}", self._h_delivery),
        ]
        await self._serve(routes, client_max_size=256 * 1024 * 1024)

    async def close(self) -> None:
        for task in [*self._drivers, *self._webhook_tasks]:
            task.cancel()
        await asyncio.gather(*self._drivers, *self._webhook_tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self._client = self._runner = self._site = None

    # ------------------------------------------------------------ faults and auth (the middleware is FakeServer's)

    async def _answer_fault(self, fault: Fault, request: web.Request, handler: Handler) -> web.StreamResponse:
        if fault.drop_after_create:
            await self._dispatch(request, handler)
            return drop_connection(request)
        if fault.answer_when is not None:
            response = await self._dispatch(request, handler)
            await fault.answer_when.wait()
            return response
        return await super()._answer_fault(fault, request, handler)

    async def _dispatch(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if request.path.startswith("/v1/") and request.headers.get("Authorization") != f"Bearer {self.token}":
                raise Problem(401, "Unauthenticated", "You did not pass a valid authentication token")
            if request.path.startswith("/v1/") and self._over_limit(_rate_kind(request)):
                # Replicate's own answer (its body has no title; no Retry-After is documented).
                detail = "Request was throttled. Your rate limit resets in ~30s."
                return web.json_response({"detail": detail}, status=429, content_type=PROBLEM)
            return await handler(request)
        except Problem as problem:
            return problem.response()
        except web.HTTPNotFound:
            return _not_found().response()
        except web.HTTPMethodNotAllowed:
            return Problem(405, "Method Not Allowed", f"{request.method} is not allowed here").response()

    # ------------------------------------------------------------ prediction routes

    async def _h_create(self, request: web.Request) -> web.Response:
        body = await self._body(request, "schemas_version_prediction_request")
        model, version = self._resolve_version(body["version"])
        return await self._create(request, model, version, body)

    async def _h_model_create(self, request: web.Request) -> web.Response:
        model = self._model(request)
        body = await self._body(request, "schemas_prediction_request")
        if not model.official:
            raise Problem(422, "Invalid version or not permitted", f"{model.ref} is not an official model")
        return await self._create(request, model, "hidden", body)

    async def _body(self, request: web.Request, schema_name: str) -> dict[str, Any]:
        try:
            body = json.loads(await request.read())
        except ValueError:
            raise _bad_request("Request body is not valid JSON") from None
        if errors := invalid_fields(spec_validator(schema_name).iter_errors(body), ""):
            raise _validation_problem(errors)
        return body

    def _resolve_version(self, ref: str) -> tuple[FakeModel, str]:
        name, _, vid = ref.partition(":")
        if not vid and re.fullmatch(r"[0-9a-f]{64}", name):
            name, vid = "", name
        for model in self.models.values():
            if vid and vid in model.versions and name in ("", model.ref):
                return model, vid
            if not vid and name == model.ref and model.official:
                return model, "hidden"
        raise Problem(
            422,
            "Invalid version or not permitted",
            "The specified version does not exist (or perhaps you don't have permission to use it?)",
        )

    async def _create(self, request: web.Request, model: FakeModel, version: str, body: dict[str, Any]) -> web.Response:
        wait_s = _parse_prefer(request.headers.get("Prefer"))
        cancel_after = _parse_cancel_after(request.headers.get("Cancel-After"))
        webhook = body.get("webhook")
        if webhook is not None and not _webhook_url_ok(webhook):
            field_ = {"type": "format", "field": "webhook", "description": "webhook must be an HTTPS URL"}
            raise _validation_problem([field_])
        if errors := model.input_errors(body["input"]):
            raise _validation_problem(errors)
        pred = Prediction(_new_id(), next(self._seq), model, version, body["input"], webhook)
        pred.events_filter = body.get("webhook_events_filter")
        if cancel_after is not None:
            pred.deadline = pred.created_at + timedelta(seconds=cancel_after)
        self.predictions[pred.id] = pred
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self._new_predictions.append(pred.id)
        self._notify()
        if self.timing is not None:
            self._drive(pred, self.timing.plan(pred.seq, model, pred.input))
        if wait_s is not None:
            if self.auto_advance:
                await self._step(pred, to_end=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pred.done.wait(), wait_s * self.prefer_wait_scale)
        status = 202 if wait_s is not None and not pred.terminal else 201
        return web.json_response(pred.to_json(self.base_url), status=status)

    async def _h_get(self, request: web.Request) -> web.Response:
        pred = self._pred(request.match_info["pid"])
        if self.auto_advance:
            await self._step(pred)
        return web.json_response(pred.to_json(self.base_url))

    async def _h_cancel(self, request: web.Request) -> web.Response:
        pred = self._pred(request.match_info["pid"])
        if not pred.terminal:
            self._finish(pred, "canceled")
        return web.json_response(pred.to_json(self.base_url))

    async def _h_list(self, request: web.Request) -> web.Response:
        bounds: dict[str, datetime] = {}
        for key in ("created_after", "created_before"):
            if key in request.query:
                try:
                    when = datetime.fromisoformat(request.query[key])
                except ValueError:
                    raise _bad_request(f"{key} must be an ISO 8601 date-time") from None
                bounds[key] = when if when.tzinfo else when.replace(tzinfo=UTC)
        preds = [
            p
            for p in self.predictions.values()
            if request.query.get("source") != "web"
            and ("created_after" not in bounds or p.created_at >= bounds["created_after"])
            and ("created_before" not in bounds or p.created_at < bounds["created_before"])
        ]
        return web.json_response(self._page(request, [(p.seq, p.to_json(self.base_url)) for p in preds]))

    def _pred(self, prediction_id: str) -> Prediction:
        if (pred := self.predictions.get(prediction_id)) is None:
            raise _not_found("Prediction")
        return pred

    # ------------------------------------------------------------ models, secret, output delivery

    def _model(self, request: web.Request) -> FakeModel:
        ref = f"{request.match_info['owner']}/{request.match_info['name']}"
        if (model := self.models.get(ref)) is None:
            raise _not_found(f"Model {ref}")
        return model

    async def _h_model(self, request: web.Request) -> web.Response:
        m = self._model(request)
        return web.json_response(
            {
                "url": f"https://replicate.com/{m.ref}",
                "owner": m.owner,
                "name": m.name,
                "description": m.description,
                "visibility": "public",
                "is_official": m.official,
                "github_url": None,
                "paper_url": None,
                "license_url": None,
                "cover_image_url": None,
                "run_count": sum(p.model is m for p in self.predictions.values()),
                "default_example": None,
                "latest_version": m.version_json(m.versions[0]),
            }
        )

    async def _h_version(self, request: web.Request) -> web.Response:
        model, vid = self._model(request), request.match_info["vid"]
        if vid not in model.versions:
            raise _not_found(f"Version {vid}")
        return web.json_response(model.version_json(vid))

    async def _h_secret(self, request: web.Request) -> web.Response:
        return web.json_response({"key": self.webhook_secret})

    async def _h_delivery(self, request: web.Request) -> web.Response:
        if (gate := self._download_gates.get(request.match_info["pid"])) is not None:
            await gate.wait()
        out = self._outputs.get(request.match_info["pid"], {}).get(request.match_info["name"])
        if out is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=out.data, headers={"Content-Type": out.content_type})

    def hold_downloads(self, prediction_id: str) -> None:
        """Keep every download of ``prediction_id``'s outputs waiting (a slow file server) until
        ``release_downloads``: the request is recorded when it arrives, answered when released."""
        self._download_gates.setdefault(prediction_id, asyncio.Event())

    def release_downloads(self, prediction_id: str) -> None:
        gate = self._download_gates.pop(prediction_id, None)
        if gate is not None:
            gate.set()

    def add_model(self, model: FakeModel) -> None:
        self.models[model.ref] = model

    # ------------------------------------------------------------ fault injection

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
        drop_after_create: bool = False,
        when: Callable[[RecordedRequest], bool] | None = None,
        answer_when: asyncio.Event | None = None,
    ) -> Fault:
        """Answer the next ``times`` matching requests (None: forever) with a failure.

        ``path`` is a regex searched in the request path. ``status=None`` with ``delay_s`` delays and then
        answers normally (a ``delay_s`` past the client's timeout is a hang: the client gives up, and a create
        still lands when the delay ends). ``drop`` closes the connection unanswered; ``drop_after_create`` runs
        the real handler (the prediction is created) and then closes the connection unanswered; ``answer_when``
        (with ``status=None``) runs it and holds its answer until the event is set (a slow answer). ``when``, asked
        with each request (as recorded) that matches the other filters, picks the ones that fail, e.g. a seeded
        random share; faults are tried in the order they were injected and the first that matches answers.
        """
        fault = Fault(
            method,
            path,
            status,
            body,
            dict(headers or {}),
            times,
            delay_s,
            drop,
            drop_after_create,
            when=when,
            answer_when=answer_when,
        )
        self.faults.append(fault)
        return fault
