"""A strict fake of Replicate's HTTP API (``https://api.replicate.com/v1``) for tests.

A real aiohttp server on ``127.0.0.1:<random port>``. Request bodies are validated against the official
OpenAPI spec (``tests/specs/replicate-openapi.json``) and model inputs against each fake model's input
schema; errors use Replicate's status codes and ``application/problem+json`` bodies. Tests drive predictions
explicitly (``begin``/``succeed``/``fail``/``abort``/``hit_deadline``) or set ``auto_advance``, and they
synchronise by awaiting hooks (``wait_for_prediction``, ``wait_for_status``, ``next_request``,
``next_webhook_delivery``, ``wait_for_webhook_deliveries``), never by sleeping. Faults: ``inject`` (statuses,
hangs, drops, chosen per request with ``when=``); webhooks can be held back (``hold_webhooks``) to arrive late.
A broken or hostile model server: ``swap_outputs`` serves something else as each output file (an HTML page,
an executable, audio under another name).

Models live in tests/fakes/models.py (shared with the fake Cog server) and are re-exported here. File inputs
(``format: uri``) are fetched when the prediction runs, as Cog does before ``predict()``: ``data:`` URLs are
decoded, ``<base_url>/files/<id>`` (or ``.../download``) is read from this fake's files API, and any other
http(s) URL is fetched with aiohttp; ``input_fetches`` records the URLs. A failed fetch fails the prediction.
Models run in a worker thread, so a long encode never blocks the event loop.

Deliberate differences from the real service (contract: tests/specs/replicate.md):

* ``webhook`` must be https, except ``http://`` to 127.0.0.1 / localhost / [::1], because tests run on
  plain-http loopback.
* Output files are served by this server at ``/delivery/<prediction id>/<name>`` (stand-in for
  replicate.delivery, no auth needed); ``/v1/files/<id>/download`` does not check signed query params.
* musicgen: ``duration`` outside 1..300 fails with a "fake: ..." error; an empty input segment and a
  continuation segment exactly as long as ``duration`` fail with "fake: ..." errors (the real wording is
  unknown). Input-fetch failures fail with "fake: ..." errors too.
* Only ``start`` and ``completed`` webhooks are sent (single outputs appear at completion), so
  ``output``/``logs`` events never fire.
* Unknown input keys are ignored, as Replicate does; ``null`` for a typed input is a type error.
* Malformed ``Prefer``/``Cancel-After`` headers, JSON or multipart bodies get 400 (real codes unverified).
* Creates answer 201, or 202 when ``Prefer: wait`` ran out before the prediction finished. With
  ``auto_advance``, ``Prefer: wait`` runs the prediction to the end at once; each GET advances one step.
* musicgen logs say ``Using seed <N>`` (no colon), as cog-musicgen's predict.py prints it. A failed run's
  logs end with ``<ExceptionType>: <error>`` (no traceback).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import re
import secrets
import string
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import jsonschema
from aiohttp import web
from aiohttp.typedefs import Handler

from tests.fakes import _http
from tests.fakes._http import FakeServer, drop_connection
from tests.fakes._http import RecordedRequest as RecordedRequest
from tests.fakes.models import (
    MODELS,
    FakeModel,
    FetchError,
    InputFile,
    ModelError,
    OutputFile,
    fetch_url,
    invalid_fields,
    resolve_inputs,
)
from tests.fakes.models import MUSICGEN as MUSICGEN
from tests.fakes.models import NONEXISTENT_MODELS as NONEXISTENT_MODELS
from tests.fakes.models import RIFFUSION as RIFFUSION
from tests.fakes.models import STABLE_AUDIO as STABLE_AUDIO
from tests.fakes.models import run_musicgen as run_musicgen

PROBLEM = "application/problem+json"
SPEC_PATH = Path(__file__).resolve().parents[1] / "specs" / "replicate-openapi.json"
TERMINAL = frozenset({"succeeded", "failed", "canceled", "aborted"})
DEFAULT_TOKEN = "r8_fake_token_0123456789"
DEFAULT_WEBHOOK_SECRET = "whsec_" + base64.b64encode(hashlib.sha256(b"encore-fake").digest()[:24]).decode()
_ID_CHARS = string.ascii_lowercase + string.digits


def _new_id(prefix: str = "", n: int = 26, chars: str = _ID_CHARS) -> str:
    return prefix + "".join(secrets.choice(chars) for _ in range(n))


def _webhook_id() -> str:
    return _new_id("msg_", 27, string.ascii_letters + string.digits)


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="microseconds").replace("+00:00", "Z")


def sign_webhook(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks ``v1,<base64 HMAC-SHA256>`` of ``<id>.<timestamp>.<body>``, keyed by the secret."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


# ---------------------------------------------------------------- errors and validation


class Problem(Exception):
    """Raised inside handlers; rendered as an ``application/problem+json`` response."""

    def __init__(self, status: int, title: str, detail: str, **extra: Any) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.body: dict[str, Any] = {"title": title, "detail": detail, "status": status, **extra}

    def response(self) -> web.Response:
        return web.json_response(self.body, status=self.status, content_type=PROBLEM)


def _not_found(what: str = "The requested resource") -> Problem:
    return Problem(404, "Not found", f"{what} could not be found.")


def _bad_request(detail: str) -> Problem:
    return Problem(400, "Bad Request", detail)


@cache
def _spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text())


@cache
def spec_validator(schema_name: str) -> jsonschema.Draft202012Validator:
    """Validator for ``#/components/schemas/<schema_name>`` of the official spec, ``$ref``s resolved."""
    root = {"$ref": f"#/components/schemas/{schema_name}", "components": _spec()["components"]}
    return jsonschema.Draft202012Validator(root)


def _validation_problem(fields: list[dict[str, str]]) -> Problem:
    detail = "".join(f"- {f['field']}: {f['description']}\n" for f in fields)
    return Problem(422, "Input validation failed", detail, invalid_fields=fields)


def _parse_prefer(value: str | None) -> float | None:
    """Seconds to hold the create response open, from ``Prefer: wait[=N]``; None if absent."""
    if value is None:
        return None
    pattern = _spec()["components"]["parameters"]["parameters_prefer_header"]["schema"]["pattern"]
    v = value.strip()
    _, _, n = v.partition("=")
    if not re.fullmatch(pattern, v) or int(n or 60) > 60:
        raise _bad_request(f"Invalid Prefer header {value!r}: expected 'wait' or 'wait=N' with N in 1..60")
    return float(n or 60)


def _parse_cancel_after(value: str | None) -> float | None:
    """Seconds from ``Cancel-After`` (``30``, ``30s``, ``5m``, ``1h30m45s``); None if absent; min 5 s."""
    if value is None:
        return None
    v = value.strip()
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", v)
    if re.fullmatch(r"\d+(?:\.\d+)?", v):
        seconds = float(v)
    elif v and m:
        seconds = int(m[1] or 0) * 3600 + int(m[2] or 0) * 60 + float(m[3] or 0)
    else:
        raise _bad_request(f"Invalid Cancel-After header {value!r}: expected e.g. 30s, 5m or 1h30m45s")
    if seconds < 5:
        raise _bad_request("Cancel-After must be at least 5 seconds")
    return seconds


def _webhook_url_ok(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "https":
        return bool(parts.hostname)
    # Deliberate leniency: tests run their webhook receiver on plain-http loopback.
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")


# ---------------------------------------------------------------- state records


@dataclass(frozen=True)
class WebhookDelivery:
    webhook_id: str
    event: str
    status_code: int | None  # None: connection error or timeout
    prediction_id: str
    attempt: int  # 1 for the first try; duplicates start again at 1
    body: bytes
    at: float = field(default_factory=time.perf_counter)  # when the answer came (perf_counter)


@dataclass
class _Message:
    prediction_id: str
    event: str
    url: str
    webhook_id: str
    body: bytes
    retry: bool


@dataclass
class Fault(_http.Fault):
    """An injected failure; see ``FakeReplicate.inject``. ``hits`` counts the requests it answered."""

    drop_after_create: bool

    def response(self, status: int) -> web.Response:
        body = self.body
        if body is None and status == 429:
            body = {"detail": "Request was throttled. Your rate limit resets in ~30s."}
        elif body is None:
            phrase = HTTPStatus(status).phrase
            body = {"title": phrase, "detail": f"fake: injected {status} {phrase}", "status": status}
        return web.json_response(body, status=status, headers=self.headers, content_type=PROBLEM)


@dataclass
class Prediction:
    id: str
    seq: int
    model: FakeModel
    version: str
    input: dict[str, Any]
    webhook: str | None = None
    events_filter: list[str] | None = None
    deadline: datetime | None = None
    created_at: datetime = field(default_factory=_now)
    status: str = "starting"
    output: Any = None
    logs: str = ""
    error: str | None = None
    data_removed: bool = False
    started_at: datetime | None = None
    completed_at: datetime | None = None
    running: bool = False  # fetching inputs or running the model
    done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    held_webhooks: list[_Message] = field(default_factory=list, repr=False)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def to_json(self, api: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "model": self.model.ref,
            "version": self.version,
            "input": self.input,
            "logs": self.logs,
            "output": self.output,
            "data_removed": self.data_removed,
            "error": self.error,
            "source": "api",
            "status": self.status,
            "created_at": _iso(self.created_at),
            "urls": {
                "get": f"{api}/predictions/{self.id}",
                "cancel": f"{api}/predictions/{self.id}/cancel",
                "web": f"https://replicate.com/p/{self.id}",
            },
        }
        for key in ("started_at", "completed_at", "deadline"):
            if (value := getattr(self, key)) is not None:
                out[key] = _iso(value)
        if self.completed_at is not None:
            start = self.started_at or self.completed_at
            out["metrics"] = {
                "predict_time": (self.completed_at - start).total_seconds(),
                "total_time": (self.completed_at - self.created_at).total_seconds(),
            }
        return out


@dataclass
class StoredFile:
    id: str
    seq: int
    content: bytes
    content_type: str
    filename: str
    metadata: dict[str, Any]
    created_at: datetime = field(default_factory=_now)

    def to_json(self, api: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "urls": {"get": f"{api}/files/{self.id}"},
            "content_type": self.content_type,
            "size": len(self.content),
            "checksums": {"sha256": hashlib.sha256(self.content).hexdigest()},
            "metadata": self.metadata,
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.created_at + timedelta(days=1)),
        }


def _cursor(kind: str, seq: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{seq}".encode()).decode().rstrip("=")


# ---------------------------------------------------------------- the server


class FakeReplicate(FakeServer[Fault]):
    """The fake API server. Use ``async with FakeReplicate() as fake:`` and point the client at ``base_url``."""

    _label = "FakeReplicate"
    _record_multipart_bodies = False

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
        auto_advance: bool = False,
        reorder_webhooks: bool = False,
        webhook_retries: int = 2,
        page_size: int = 100,
        max_file_bytes: int = 100 * 1024 * 1024,
        prefer_wait_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.token = token
        self.webhook_secret = webhook_secret
        self.auto_advance = auto_advance
        self.reorder_webhooks = reorder_webhooks  # hold `start` webhooks and send them after `completed`
        self.webhook_retries = webhook_retries  # extra attempts for the final webhook
        self.webhook_retry_delay_s = 0.002  # doubled after each failed attempt
        self.webhook_timeout_s = 5.0
        self.page_size = page_size
        self.max_file_bytes = max_file_bytes  # uploads of this size or more get 413
        self.prefer_wait_scale = prefer_wait_scale  # multiplies `Prefer: wait=N` so tests can shorten it
        self.models: dict[str, FakeModel] = dict(MODELS)
        self.predictions: dict[str, Prediction] = {}
        self.files: dict[str, StoredFile] = {}
        self.input_fetches: list[str] = []  # file-input URLs fetched for predictions, in order
        self.webhook_deliveries: list[WebhookDelivery] = []
        self._outputs: dict[str, dict[str, OutputFile]] = {}
        self._seq = itertools.count(1)
        self._new_predictions: deque[str] = deque()
        self._new_deliveries: deque[WebhookDelivery] = deque()
        self._webhook_gates: dict[str, asyncio.Event] = {}  # predictions whose webhooks are held back
        self._output_swap: Callable[[OutputFile], OutputFile] | None = None

    # ------------------------------------------------------------ lifecycle

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

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
        for task in list(self._webhook_tasks):
            task.cancel()
        await asyncio.gather(*self._webhook_tasks, return_exceptions=True)
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
        return await super()._answer_fault(fault, request, handler)

    async def _dispatch(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if request.path.startswith("/v1/") and request.headers.get("Authorization") != f"Bearer {self.token}":
                raise Problem(401, "Unauthenticated", "You did not pass a valid authentication token")
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
        self._new_predictions.append(pred.id)
        self._notify()
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

    def _page(self, request: web.Request, items: list[tuple[int, Any]]) -> dict[str, Any]:
        """Cursor pagination, newest (highest seq) first; cursors are ``b:<seq>`` (older) / ``a:<seq>``."""
        items = sorted(items, key=lambda item: -item[0])
        page = items[: self.page_size]
        if cursor := request.query.get("cursor"):
            try:
                kind, seq = base64.urlsafe_b64decode(cursor + "==").decode().split(":")
                older = [i for i in items if i[0] < int(seq)] if kind == "b" else None
                newer = [i for i in items if i[0] > int(seq)] if kind == "a" else None
            except ValueError:
                raise _bad_request("Invalid cursor") from None
            page = older[: self.page_size] if older is not None else (newer or [])[-self.page_size :]

        def link(kind: str, seq: int) -> str:
            return f"{self.root_url}{request.path}?{urlencode({**request.query, 'cursor': _cursor(kind, seq)})}"

        more_older = bool(page) and any(i[0] < page[-1][0] for i in items)
        more_newer = bool(page) and any(i[0] > page[0][0] for i in items)
        return {
            "next": link("b", page[-1][0]) if more_older else None,
            "previous": link("a", page[0][0]) if more_newer else None,
            "results": [i[1] for i in page],
        }

    # ------------------------------------------------------------ models, secret, files, delivery

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

    async def _h_file_create(self, request: web.Request) -> web.Response:
        if not request.content_type.startswith("multipart/form-data"):
            raise _bad_request("Request must be multipart/form-data")
        reader = await request.multipart()
        content: bytes | None = None
        filename, content_type, metadata = "file", "application/octet-stream", {}
        while (part := await reader.next()) is not None:
            if not isinstance(part, aiohttp.BodyPartReader):
                continue
            if part.name == "content":
                data = bytearray()
                while chunk := await part.read_chunk():
                    data += chunk
                    if len(data) >= self.max_file_bytes:
                        raise Problem(413, "Content Too Large", "Files must be less than 100MB in size")
                content, filename = bytes(data), part.filename or filename
                content_type = part.headers.get("Content-Type", content_type)
            elif part.name == "metadata":
                try:
                    metadata = json.loads(await part.text())
                except ValueError:
                    metadata = None
                if not isinstance(metadata, dict):
                    raise _bad_request("metadata must be a JSON object")
            elif part.name in ("filename", "type"):
                value = await part.text()
                filename, content_type = (value, content_type) if part.name == "filename" else (filename, value)
        if content is None:
            raise _bad_request("The 'content' part is required")
        if len(filename.encode()) > 255:
            raise _bad_request("filename must be at most 255 bytes")
        stored = StoredFile(_new_id(), next(self._seq), content, content_type, filename, metadata)
        self.files[stored.id] = stored
        return web.json_response(stored.to_json(self.base_url), status=201)

    def _file(self, request: web.Request) -> StoredFile:
        if (stored := self.files.get(request.match_info["fid"])) is None:
            raise _not_found("File")
        return stored

    async def _h_file_get(self, request: web.Request) -> web.Response:
        return web.json_response(self._file(request).to_json(self.base_url))

    async def _h_file_delete(self, request: web.Request) -> web.Response:
        del self.files[self._file(request).id]
        return web.Response(status=204)

    async def _h_file_download(self, request: web.Request) -> web.Response:
        stored = self._file(request)
        return web.Response(body=stored.content, headers={"Content-Type": stored.content_type})

    async def _h_file_list(self, request: web.Request) -> web.Response:
        items = [(f.seq, f.to_json(self.base_url)) for f in self.files.values()]
        return web.json_response(self._page(request, items))

    async def _h_delivery(self, request: web.Request) -> web.Response:
        out = self._outputs.get(request.match_info["pid"], {}).get(request.match_info["name"])
        if out is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=out.data, headers={"Content-Type": out.content_type})

    # ------------------------------------------------------------ state machine

    def _pred(self, prediction_id: str) -> Prediction:
        if (pred := self.predictions.get(prediction_id)) is None:
            raise _not_found("Prediction")
        return pred

    def prediction(self, prediction_id: str) -> Prediction:
        """The live prediction record (KeyError if unknown)."""
        return self.predictions[prediction_id]

    @staticmethod
    def _require(pred: Prediction, *statuses: str) -> None:
        if pred.status not in statuses:
            raise RuntimeError(f"prediction {pred.id} is {pred.status}; expected one of {statuses}")

    async def _step(self, pred: Prediction, *, to_end: bool = False) -> None:
        """auto_advance: one step (starting -> processing -> succeeded/failed), or all the way."""
        if pred.status == "starting":
            self._begin(pred)
            if not to_end:
                return
        if pred.status == "processing" and not pred.running:
            await self._succeed(pred)

    def _begin(self, pred: Prediction) -> None:
        self._require(pred, "starting")
        pred.status, pred.started_at = "processing", _now()
        self._emit(pred, "start")
        self._notify()

    async def _fetch(self, url: str) -> InputFile:
        """A file input: from this fake's files API if it is one of ours, else ``data:``/http(s) via aiohttp."""
        self.input_fetches.append(url)
        own = f"{self.base_url}/files/"
        if url.startswith(own):
            fid = url.removeprefix(own).split("?")[0].removesuffix("/download")
            if (stored := self.files.get(fid)) is None:
                raise FetchError(f"fake: fetching {url} failed: HTTP 404")
            return InputFile(url, stored.content, stored.content_type)
        return await fetch_url(self._http, url)

    async def _succeed(self, pred: Prediction, duplicates: int = 0) -> None:
        """Fetch file inputs, run the model in a thread, publish the output (or fail by the model's rules).

        If the prediction is canceled or failed meanwhile, the result is dropped.
        """
        if pred.status == "starting":
            self._begin(pred)
        self._require(pred, "processing")
        if pred.running:
            raise RuntimeError(f"prediction {pred.id} is already running")
        pred.running = True
        try:
            try:
                inp = await resolve_inputs(pred.model, dict(pred.input), self._fetch)
                output, logs = await asyncio.to_thread(pred.model.run, inp)
            except FetchError as exc:
                if pred.status == "processing":
                    pred.logs = f"{exc}\n"
                    self._finish(pred, "failed", error=str(exc), duplicates=duplicates)
                return
            except ModelError as exc:
                if pred.status == "processing":
                    pred.logs = f"{exc.logs}{exc.exc_type}: {exc}\n"
                    self._finish(pred, "failed", error=str(exc), duplicates=duplicates)
                return
        finally:
            pred.running = False
        if pred.status != "processing":
            return
        files: dict[str, OutputFile] = {}
        pred.logs = logs
        pred.output = self._publish(pred.id, output, files)
        self._outputs[pred.id] = files
        self._finish(pred, "succeeded", duplicates=duplicates)

    def _publish(self, pid: str, value: Any, files: dict[str, OutputFile]) -> Any:
        """Replace OutputFile values (at any depth) with their download URLs."""
        if isinstance(value, OutputFile):
            if self._output_swap is not None:
                value = self._output_swap(value)
            files[value.name] = value
            return f"{self.root_url}/delivery/{pid}/{value.name}"
        if isinstance(value, dict):
            return {k: self._publish(pid, v, files) for k, v in value.items()}
        if isinstance(value, list):
            return [self._publish(pid, v, files) for v in value]
        return value

    def _finish(self, pred: Prediction, status: str, *, error: str | None = None, duplicates: int = 0) -> None:
        pred.status, pred.error, pred.completed_at = status, error, _now()
        pred.done.set()
        self._emit(pred, "completed", duplicates=duplicates)
        for msg in pred.held_webhooks:
            self._schedule(msg)
        pred.held_webhooks.clear()
        self._notify()

    # ------------------------------------------------------------ driving predictions from tests

    async def begin(self, prediction_id: str) -> None:
        """starting -> processing; sends the ``start`` webhook if the filter asks for it."""
        self._begin(self.prediction(prediction_id))

    async def succeed(self, prediction_id: str, *, duplicate_webhook: int = 0) -> None:
        """Run the model (beginning first if needed): succeeded with output, or failed by the model's rules.

        File inputs are fetched first; a fetch failure fails the prediction. RuntimeError if already running.

        ``duplicate_webhook`` re-sends the ``completed`` webhook that many extra times with the same id.
        """
        await self._succeed(self.prediction(prediction_id), duplicate_webhook)

    async def fail(self, prediction_id: str, error: str = "fake: prediction failed") -> None:
        pred = self.prediction(prediction_id)
        self._require(pred, "starting", "processing")
        self._finish(pred, "failed", error=error)

    async def abort(self, prediction_id: str) -> None:
        """starting -> aborted (ended before it started)."""
        pred = self.prediction(prediction_id)
        self._require(pred, "starting")
        self._finish(pred, "aborted")

    async def hit_deadline(self, prediction_id: str) -> None:
        """The ``Cancel-After`` deadline passed: aborted if still starting, else canceled."""
        pred = self.prediction(prediction_id)
        self._require(pred, "starting", "processing")
        self._finish(pred, "aborted" if pred.status == "starting" else "canceled")

    def expire_outputs(self, prediction_id: str) -> None:
        """Simulate the ~1 h data removal: input/output/logs cleared, data_removed, files 404."""
        pred = self.prediction(prediction_id)
        pred.input, pred.output, pred.logs, pred.data_removed = {}, None, "", True
        self._outputs.pop(prediction_id, None)

    def swap_outputs(self, swap: Callable[[OutputFile], OutputFile] | None) -> None:
        """Serve ``swap(file)`` in place of each output file the models make from now on (None: stop):
        its name is the URL's last segment, its content type the ``Content-Type`` it is served with."""
        self._output_swap = swap

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
    ) -> Fault:
        """Answer the next ``times`` matching requests (None: forever) with a failure.

        ``path`` is a regex searched in the request path. ``status=None`` with ``delay_s`` delays and then
        answers normally (a ``delay_s`` past the client's timeout is a hang: the client gives up, and a create
        still lands when the delay ends). ``drop`` closes the connection unanswered; ``drop_after_create`` runs
        the real handler (the prediction is created) and then closes the connection unanswered. ``when``, asked
        with each request (as recorded) that matches the other filters, picks the ones that fail, e.g. a seeded
        random share; faults are tried in the order they were injected and the first that matches answers.
        """
        fault = Fault(
            method, path, status, body, dict(headers or {}), times, delay_s, drop, drop_after_create, when=when
        )
        self.faults.append(fault)
        return fault

    # ------------------------------------------------------------ webhooks

    def _emit(self, pred: Prediction, event: str, *, duplicates: int = 0) -> None:
        url = pred.webhook
        if url is None or event not in (pred.events_filter or ("output", "completed")):
            return
        body = json.dumps(pred.to_json(self.base_url)).encode()
        msg = _Message(pred.id, event, url, _webhook_id(), body, retry=event == "completed")
        if event == "start" and self.reorder_webhooks:
            pred.held_webhooks.append(msg)
            return
        self._schedule(msg)
        for _ in range(duplicates):
            self._schedule(replace(msg, retry=False))

    def _schedule(self, msg: _Message) -> None:
        """Deliver in the background, after earlier messages for the same prediction."""
        self._chain(msg.prediction_id, lambda: self._deliver(msg))

    async def _deliver(self, msg: _Message) -> None:
        if (gate := self._webhook_gates.get(msg.prediction_id)) is not None:
            await gate.wait()
        attempts = 1 + (self.webhook_retries if msg.retry else 0)
        for attempt in range(1, attempts + 1):
            status = await self._post_signed(msg.url, msg.webhook_id, msg.body)
            delivery = WebhookDelivery(msg.webhook_id, msg.event, status, msg.prediction_id, attempt, msg.body)
            self._log(self.webhook_deliveries, self._new_deliveries, delivery)
            if status is not None and 200 <= status < 300:
                return
            if attempt < attempts:
                await asyncio.sleep(self.webhook_retry_delay_s * 2 ** (attempt - 1))

    async def _post_signed(
        self,
        url: str,
        webhook_id: str,
        body: bytes,
        *,
        timestamp: int | None = None,
        signature: str | None = None,
        omit_headers: Iterable[str] = (),
    ) -> int | None:
        ts = int(time.time()) if timestamp is None else timestamp
        headers = {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": sign_webhook(self.webhook_secret, webhook_id, ts, body)
            if signature is None
            else signature,
        }
        for name in omit_headers:
            headers.pop(name.lower(), None)
        return await self._post(url, body, headers, self.webhook_timeout_s)

    def hold_webhooks(self, prediction_id: str) -> None:
        """Delay every webhook of ``prediction_id`` (in order, with their retries) until ``release_webhooks``.

        Replicate's webhooks can arrive late, e.g. after the poller has already found the outcome.
        ``drain_webhooks`` waits for held webhooks too, so release them first.
        """
        self._webhook_gates.setdefault(prediction_id, asyncio.Event())

    def release_webhooks(self, prediction_id: str) -> None:
        """Send the held webhooks of ``prediction_id`` now (and later ones at once)."""
        gate = self._webhook_gates.pop(prediction_id, None)
        if gate is not None:
            gate.set()

    async def send_webhook(
        self,
        prediction_id: str,
        *,
        event: str = "completed",
        webhook_id: str | None = None,
        timestamp: int | None = None,
        signature: str | None = None,
        body: bytes | None = None,
        url: str | None = None,
        omit_headers: Iterable[str] = (),
    ) -> int:
        """POST one hand-made webhook now and return our server's status code (not recorded, never retried).

        Defaults: the prediction's current JSON, a fresh ``webhook-id``, now, a valid signature, its webhook URL.
        ``event`` is informational only. Raises ConnectionError if the receiver is unreachable.
        """
        del event  # informational: hand-made sends bypass the events filter
        pred = self.prediction(prediction_id)
        target = url or pred.webhook
        if target is None:
            raise ValueError(f"prediction {prediction_id} has no webhook URL; pass url=")
        data = body if body is not None else json.dumps(pred.to_json(self.base_url)).encode()
        wid = webhook_id or _webhook_id()
        status = await self._post_signed(
            target, wid, data, timestamp=timestamp, signature=signature, omit_headers=omit_headers
        )
        if status is None:
            raise ConnectionError(f"webhook POST to {target} failed")
        return status

    # ------------------------------------------------------------ awaitable hooks (and FakeServer's)

    async def wait_for_prediction(self, timeout: float = 5.0) -> str:
        """The id of the next prediction created (each is returned once, in creation order)."""
        return await self._next(self._new_predictions, timeout, "new prediction")

    async def wait_for_status(self, prediction_id: str, *statuses: str, timeout: float = 5.0) -> Prediction:
        """Wait until the prediction is in one of ``statuses`` (default: any terminal status)."""
        wanted = statuses or tuple(TERMINAL)
        pred = self.prediction(prediction_id)
        return await self._wait(lambda: pred if pred.status in wanted else None, timeout, f"status {wanted}")

    async def next_webhook_delivery(self, timeout: float = 5.0) -> WebhookDelivery:
        """The next webhook delivery attempt (each returned once, in order)."""
        return await self._next(self._new_deliveries, timeout, "webhook delivery")

    async def wait_for_webhook_deliveries(
        self, prediction_id: str, count: int, timeout: float = 5.0
    ) -> list[WebhookDelivery]:
        """The first ``count`` webhook delivery attempts for ``prediction_id`` (retries included), once made.

        Unlike ``next_webhook_delivery`` it consumes nothing, so many tasks can wait on their own predictions.
        """

        def check() -> list[WebhookDelivery] | None:
            sent = [d for d in self.webhook_deliveries if d.prediction_id == prediction_id]
            return sent[:count] if len(sent) >= count else None

        return await self._wait(check, timeout, f"{count} webhook deliveries for {prediction_id}")

    async def drain_webhooks(self, timeout: float = 5.0) -> None:
        """Wait until every scheduled webhook delivery (with retries) has finished."""
        if self._webhook_tasks:
            await asyncio.wait_for(asyncio.gather(*list(self._webhook_tasks), return_exceptions=True), timeout)
