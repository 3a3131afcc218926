"""A strict fake of one self-hosted Cog model server (cog 0.13.7's Python HTTP server) for tests.

Contract: tests/specs/cog.md. A real aiohttp server on ``127.0.0.1:<random port>`` serving ONE
fake model (default: musicgen from ``tests.fakes.replicate``). Paths have no ``/v1`` prefix and no auth.
Request bodies are validated by a pydantic model built from the model's input JSON schema, the way
FastAPI does it (lax mode: ``"8"`` is accepted for an integer, ``"eight"`` is not), and errors come back in
FastAPI's ``{"detail": [{"type", "loc", "msg", "input", "ctx"}]}`` shape.

Tests drive each run: it stays ``processing`` until ``await fake.complete(key)`` / ``await fake.fail(key)``
(or runs to the end at once with ``auto_complete=True``), and they synchronise by awaiting hooks
(``wait_for_prediction``, ``wait_for_status``, ``next_request``, ``next_webhook_delivery``, ``next_upload``),
never by sleeping. ``key`` is the prediction id, or an internal ``cog-fake-noid-<n>`` key when the client
sent none (the response ``id`` then stays null, as in Cog, and the prediction cannot be canceled over HTTP).

Behaviour taken from reading cog's code rather than observed (see cog.md for the observed parts):

* The echoed ``input`` is the validated input: unknown keys dropped, defaults filled in, ``null`` for
  inputs with no default. The model's ``run`` (in a worker thread) gets only the inputs the client sent,
  coerced, with file inputs fetched first (``InputFile``; a failed fetch fails the prediction). A missing
  or ``null`` ``input`` is passed on as ``{}`` unvalidated and echoed as ``{}``. An explicit ``null`` for a
  typed input is a 422 (pydantic 2). ``created_at`` is echoed re-serialised (``Z`` becomes ``+00:00``).
* Webhook bodies hold only fields that were set: ``input``, ``id``, ``created_at`` (null unless sent),
  ``status``, ``output``, ``logs``, ``started_at``, then ``completed_at`` and ``metrics`` (success) or
  ``error`` (failure). HTTP responses hold every field.
* For a sync request the webhooks carry the server-local output path: the data URL (or
  ``output_file_prefix`` upload) is made only for the HTTP response.
* An empty ``webhook_events_filter`` means all events; the webhook URL is normalised by pydantic
  (``http://host:port`` gains a trailing ``/``).
* ``traceparent``/``tracestate`` on the create request are passed on to webhooks and uploads.
* A failed output upload fails the prediction with ``"Got error trying to upload output files"``.

Deliberate gaps and choices:

* Throttling of ``logs`` webhooks (0.5 s) is not modelled: each ``log()`` call and the model's logs at
  completion each send one ``logs`` event (filter permitting). Models return rather than yield, so no
  ``output`` event is ever sent.
* Retry delays follow urllib3 (no sleep before the first retry, then ``base * 2**(n-1)``) but with a
  millisecond base and a cap (``webhook_backoff_s``/``webhook_backoff_max_s``, ``upload_backoff_s``);
  ``Retry-After`` is ignored.
* File inputs (``format: uri``) must be ``http(s)://`` or ``data:`` URLs; they are never fetched.
* Output that does not match the declared type (real: 500) is not checked.
* Predictions while ``SETUP_FAILED``/``DEFUNCT`` get 500 ``Internal Server Error`` (real behaviour
  unverified). A POST whose body ``id`` is already running gets 409 even with free slots.
* The server-local output path (``/tmp/tmpXXXXXXXX/<name>``) is never written to disk, so a client that
  tries to open it fails even when it shares the machine.
* ``POST /shutdown`` answers ``{}`` and stops accepting new connections; running predictions are untouched.
* ``/docs`` is a stub HTML page; there are no ``/trainings`` routes.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import json
import mimetypes
import posixpath
import secrets
import string
from base64 import b64encode
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any, cast
from urllib.parse import urlparse

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import AfterValidator, AnyUrl, BaseModel, ConfigDict, Field, UrlConstraints, ValidationError, create_model

from tests.fakes import _http
from tests.fakes._http import FakeServer
from tests.fakes._http import RecordedRequest as RecordedRequest
from tests.fakes.models import (
    MUSICGEN,
    FakeModel,
    FetchError,
    InputFile,
    ModelError,
    OutputFile,
    fetch_url,
    resolve_inputs,
)

EVENTS = ("start", "output", "logs", "completed")  # cog's default webhook_events_filter: all four
TERMINAL = frozenset({"succeeded", "failed", "canceled"})
RETRY_WEBHOOK_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_UPLOAD_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
REQUESTS_UA = "python-requests/2.31.0"
UPLOAD_ERROR = "Got error trying to upload output files"
NOID_PREFIX = "cog-fake-noid-"
# Observed on cog 0.13.7 (mimetypes on its host); other extensions fall back to Python's mimetypes.
_MIME = {
    ".wav": "audio/x-wav",
    ".mp3": "audio/mpeg",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".json": "application/json",
    ".txt": "text/plain",
}


def guess_mime(filename: str) -> str | None:
    """The MIME type cog derives from a file name (``None`` when unknown; cog then writes ``data:None``)."""
    ext = posixpath.splitext(filename)[1].lower()
    return _MIME.get(ext) or mimetypes.guess_type(filename)[0]


def _now() -> datetime:
    return datetime.now(UTC)


def _dumps(value: Any) -> str:
    """FastAPI's JSONResponse encoding: compact, non-ASCII kept."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(text=_dumps(body), status=status, content_type="application/json", headers=headers)


def _jsonable(value: Any) -> Any:
    """FastAPI's jsonable_encoder for validation-error values (exceptions become ``{}``)."""
    if isinstance(value, BaseException):
        return {}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in cast(dict[Any, Any], value).items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in cast(Iterable[Any], value)]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


class _Reply(Exception):
    """Raised inside handlers to answer with a ready response."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def _unprocessable(errors: list[dict[str, Any]]) -> _Reply:
    return _Reply(_json({"detail": errors}, 422))


# ---------------------------------------------------------------- request models (pydantic, as in cog)


def _check_uri(value: str) -> str:
    parts = urlparse(value)
    if (parts.scheme in ("http", "https") and parts.netloc) or (parts.scheme == "data" and "," in value):
        return value
    raise ValueError(f"'{value}' is not a valid URL (fake: file inputs must be http(s):// or data: URLs)")


def _annotation(title: str, prop: Mapping[str, Any]) -> Any:
    """A pydantic annotation for one property of a model's input JSON schema."""
    if "enum" in prop:
        values = list(prop["enum"])
        members = [(f"m{i}", v) for i, v in enumerate(values)]
        if all(isinstance(v, str) for v in values):
            return enum.Enum(title, members, type=str)
        return enum.Enum(title, members)
    kind = prop.get("type")
    constraints: dict[str, Any] = {}
    base: Any
    if kind in ("integer", "number"):
        base = int if kind == "integer" else float
        for key, arg in (("minimum", "ge"), ("maximum", "le"), ("exclusiveMinimum", "gt"), ("exclusiveMaximum", "lt")):
            if key in prop:
                constraints[arg] = prop[key]
    elif kind == "string":
        base = str
        for key, arg in (("minLength", "min_length"), ("maxLength", "max_length"), ("pattern", "pattern")):
            if key in prop:
                constraints[arg] = prop[key]
    elif kind == "boolean":
        base = bool
    elif kind == "array":
        base = list[_annotation(f"{title}Item", prop.get("items", {}))]
    elif kind == "object":
        base = dict[str, Any]
    else:
        base = Any
    meta: list[Any] = [Field(**constraints)] if constraints else []
    if kind == "string" and prop.get("format") == "uri":
        meta.append(AfterValidator(_check_uri))
    return cast(Any, Annotated)[(base, *meta)] if meta else base


def input_model(schema: Mapping[str, Any]) -> type[BaseModel]:
    """cog's ``Input`` model for a JSON schema: unknown keys ignored, enum values kept as plain values."""
    required = set(schema.get("required", ()))
    fields: dict[str, Any] = {}
    for i, (name, prop) in enumerate(dict(schema.get("properties", {})).items()):
        default = ... if name in required and "default" not in prop else prop.get("default")
        fields[f"f{i}"] = (_annotation(str(prop.get("title") or name), prop), Field(default, alias=name))
    config = ConfigDict(use_enum_values=True, protected_namespaces=(), extra="ignore")
    return create_model("Input", __config__=config, **fields)


class WebhookEvent(enum.StrEnum):
    START = "start"
    OUTPUT = "output"
    LOGS = "logs"
    COMPLETED = "completed"


WebhookUrl = Annotated[AnyUrl, UrlConstraints(allowed_schemes=["http", "https"], max_length=65536)]


def request_model(input_type: type[BaseModel]) -> type[BaseModel]:
    """cog's ``PredictionRequest`` with the model's ``Input`` (input optional, as cog's [compat] rule)."""
    return create_model(
        "PredictionRequest",
        __config__=ConfigDict(use_enum_values=True),
        input=(cast(Any, input_type | None), None),
        id=(str | None, None),
        created_at=(datetime | None, None),
        output_file_prefix=(str | None, None),
        webhook=(WebhookUrl | None, None),
        webhook_events_filter=(list[WebhookEvent] | None, Field(default_factory=lambda: list(EVENTS))),
    )


def fastapi_errors(exc: ValidationError, prefix: tuple[str | int, ...] = ("body",)) -> list[dict[str, Any]]:
    """pydantic errors as FastAPI renders them in a 422 ``detail`` list."""
    out: list[dict[str, Any]] = []
    for err in exc.errors(include_url=False):
        item: dict[str, Any] = {
            "type": err["type"],
            "loc": [*prefix, *err["loc"]],
            "msg": err["msg"],
            "input": _jsonable(err.get("input")),
        }
        if "ctx" in err:
            item["ctx"] = _jsonable(err["ctx"])
        out.append(item)
    return out


@dataclass(frozen=True)
class ParsedRequest:
    input: dict[str, Any]  # validated: all declared inputs, defaults filled, unknown keys dropped
    model_input: dict[str, Any]  # what ``run`` gets: only the inputs the client sent (coerced)
    id: str | None
    created_at: str | None
    webhook: str | None
    events: frozenset[str]
    output_file_prefix: str | None


# ---------------------------------------------------------------- records


@dataclass(frozen=True)
class WebhookDelivery:
    event: str  # start | output | logs | completed
    status_code: int | None  # None: connection error or timeout
    body: dict[str, Any]
    prediction_id: str  # the prediction's key (its id, or the internal key when it has none)
    attempt: int  # 1 for the first try
    url: str
    headers: dict[str, str]


@dataclass(frozen=True)
class UploadAttempt:
    url: str
    status_code: int | None  # None: connection error or timeout
    headers: dict[str, str]  # as sent
    size: int
    prediction_id: str  # key
    attempt: int
    multipart: bool  # True for the sync ``output_file_prefix`` style


@dataclass
class _Message:
    key: str
    event: str
    url: str
    body: bytes
    headers: dict[str, str]

    @property
    def terminal(self) -> bool:
        return self.event == "completed"


@dataclass
class Fault(_http.Fault):
    """An injected failure; see ``FakeCog.inject``. ``hits`` counts the requests it answered."""

    def response(self, status: int) -> web.Response:
        body = self.body
        if body is None:
            body = {"detail": f"fake: injected {status} {HTTPStatus(status).phrase}"}
        return _json(body, status, self.headers)


_UNSET: Any = object()


@dataclass
class CogPrediction:
    """One run. ``key`` identifies it in the fake's API; ``id`` is what the client sent (maybe None)."""

    key: str
    id: str | None
    input: dict[str, Any]
    model_input: dict[str, Any]
    created_at: str | None
    webhook: str | None
    events: frozenset[str]
    output_file_prefix: str | None
    respond_async: bool
    upload: bool  # async and the server has an upload_url
    trace_headers: dict[str, str]
    status: str = "processing"
    output: Any = None  # as cog holds it: local path(s), or uploaded URL(s)
    raw_output: Any = None  # the model's return value (OutputFile objects intact)
    logs: str = ""
    error: str | None = None
    started_at: datetime = field(default_factory=_now)
    completed_at: datetime | None = None
    metrics: dict[str, Any] | None = None
    local_paths: dict[str, OutputFile] = field(default_factory=dict)
    completing: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    held_webhooks: list[_Message] = field(default_factory=list, repr=False)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def to_json(self) -> dict[str, Any]:
        """The full PredictionResponse, as the HTTP routes return it (``output`` as cog holds it)."""
        return {
            "input": self.input,
            "output": self.output,
            "id": self.id,
            "version": None,
            "created_at": self.created_at,
            "started_at": self.started_at.isoformat(),
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
            "logs": self.logs,
            "error": self.error,
            "status": self.status,
            "metrics": self.metrics,
        }

    def webhook_json(self) -> dict[str, Any]:
        """Only the fields cog has set (``exclude_unset``): no ``version``, ``error``/``metrics`` when unset."""
        out = self.to_json()
        del out["version"]
        for key in ("completed_at", "error", "metrics"):
            if out[key] is None:
                del out[key]
        return out


class _UploadFailed(Exception):
    pass


# ---------------------------------------------------------------- the server


class FakeCog(FakeServer[Fault]):
    """The fake model server. ``async with FakeCog() as cog:`` then point the client at ``cog.base_url``."""

    _label = "FakeCog"

    def __init__(
        self,
        *,
        model: FakeModel = MUSICGEN,
        upload_url: str | None = None,
        max_concurrency: int = 1,
        webhook_auth_token: str | None = None,
        setup_done: bool = True,
        cog_version: str = "0.13.7",
        auto_complete: bool = False,
        reorder_webhooks: bool = False,
        webhook_retries: int = 12,
        webhook_backoff_s: float = 0.001,
        webhook_backoff_max_s: float = 0.01,
        webhook_timeout_s: float = 5.0,
        upload_retries: int = 3,
        upload_backoff_s: float = 0.001,
        upload_timeout_s: float = 15.0,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        super().__init__()
        self.model = model
        self.upload_url = upload_url  # the --upload-url flag; may be set after start()
        self.max_concurrency = max_concurrency
        self.webhook_auth_token = webhook_auth_token  # WEBHOOK_AUTH_TOKEN
        self.cog_version = cog_version
        self.auto_complete = auto_complete
        self.reorder_webhooks = reorder_webhooks  # hold non-terminal webhooks until after `completed`
        self.webhook_retries = webhook_retries  # extra attempts for the terminal webhook (cog: 12)
        self.webhook_backoff_s = webhook_backoff_s  # cog: 0.1
        self.webhook_backoff_max_s = webhook_backoff_max_s  # cog (urllib3): 120
        self.webhook_timeout_s = webhook_timeout_s
        self.upload_retries = upload_retries  # extra attempts for an output upload (cog: 3)
        self.upload_backoff_s = upload_backoff_s  # cog: 0.1
        self.upload_timeout_s = upload_timeout_s
        self.setup_status: str = "succeeded" if setup_done else "starting"  # starting|succeeded|failed
        self.setup_logs = ""
        self.defunct = False
        self.shutdown_requested = False
        self._stopped = False
        self.webhook_deliveries: list[WebhookDelivery] = []
        self.uploads: list[UploadAttempt] = []
        self.input_fetches: list[str] = []  # file-input URLs fetched, in order
        self.history: list[CogPrediction] = []  # every run, in creation order
        self.running: dict[str, CogPrediction] = {}  # by key
        self.input_type = input_model(model.input_schema)
        self.request_type = request_model(self.input_type)
        self._setup_started_at = _now()
        self._setup_completed_at: datetime | None = self._setup_started_at if setup_done else None
        self._noid = itertools.count(1)
        self._new_predictions: deque[str] = deque()
        self._new_deliveries: deque[WebhookDelivery] = deque()
        self._new_uploads: deque[UploadAttempt] = deque()
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def user_agent(self) -> str:
        return f"cog-worker/{self.cog_version} {REQUESTS_UA}"

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
        ref = lambda name: {"$ref": f"#/components/schemas/{name}"}  # noqa: E731
        status_values = ["starting", "processing", "succeeded", "canceled", "failed"]
        schemas: dict[str, Any] = {
            "Input": {"title": "Input", **self.model.input_schema},
            "Output": {**self.model.output_schema, "title": "Output"},
            "Status": {"title": "Status", "description": "An enumeration.", "enum": status_values, "type": "string"},
            "WebhookEvent": {
                "title": "WebhookEvent",
                "description": "An enumeration.",
                "enum": list(EVENTS),
                "type": "string",
            },
            "PredictionRequest": {
                "title": "PredictionRequest",
                "type": "object",
                "properties": {
                    "input": ref("Input"),
                    "id": {"title": "Id", "type": "string"},
                    "created_at": {"title": "Created At", "type": "string", "format": "date-time"},
                    "output_file_prefix": {"title": "Output File Prefix", "type": "string"},
                    "webhook": {
                        "title": "Webhook",
                        "maxLength": 65536,
                        "minLength": 1,
                        "type": "string",
                        "format": "uri",
                    },
                    "webhook_events_filter": {
                        "type": "array",
                        "items": ref("WebhookEvent"),
                        "default": list(EVENTS),
                    },
                },
            },
            "PredictionResponse": {
                "title": "PredictionResponse",
                "type": "object",
                "properties": {
                    "input": ref("Input"),
                    "output": ref("Output"),
                    "id": {"title": "Id", "type": "string"},
                    "version": {"title": "Version", "type": "string"},
                    "created_at": {"title": "Created At", "type": "string", "format": "date-time"},
                    "started_at": {"title": "Started At", "type": "string", "format": "date-time"},
                    "completed_at": {"title": "Completed At", "type": "string", "format": "date-time"},
                    "logs": {"title": "Logs", "type": "string", "default": ""},
                    "error": {"title": "Error", "type": "string"},
                    "status": ref("Status"),
                    "metrics": {"title": "Metrics", "type": "object"},
                },
            },
            "ValidationError": {
                "title": "ValidationError",
                "required": ["loc", "msg", "type"],
                "type": "object",
                "properties": {
                    "loc": {
                        "title": "Location",
                        "type": "array",
                        "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                    },
                    "msg": {"title": "Message", "type": "string"},
                    "type": {"title": "Error Type", "type": "string"},
                },
            },
            "HTTPValidationError": {
                "title": "HTTPValidationError",
                "type": "object",
                "properties": {"detail": {"title": "Detail", "type": "array", "items": ref("ValidationError")}},
            },
        }

        def ok(schema: dict[str, Any]) -> dict[str, Any]:
            return {"description": "Successful Response", "content": {"application/json": {"schema": schema}}}

        invalid = {
            "description": "Validation Error",
            "content": {"application/json": {"schema": ref("HTTPValidationError")}},
        }
        prefer = {"required": False, "schema": {"title": "Prefer", "type": "string"}, "name": "prefer", "in": "header"}
        pid = {
            "required": True,
            "schema": {"title": "Prediction ID", "type": "string"},
            "name": "prediction_id",
            "in": "path",
        }
        body = {"content": {"application/json": {"schema": ref("PredictionRequest")}}}
        return {
            "openapi": "3.0.2",
            "info": {"title": "Cog", "version": "0.1.0"},
            "paths": {
                "/": {"get": {"summary": "Root", "operationId": "root__get", "responses": {"200": ok({})}}},
                "/health-check": {
                    "get": {
                        "summary": "Healthcheck",
                        "operationId": "healthcheck_health_check_get",
                        "responses": {"200": ok({})},
                    }
                },
                "/predictions": {
                    "post": {
                        "summary": "Predict",
                        "description": "Run a single prediction on the model",
                        "operationId": "predict_predictions_post",
                        "parameters": [prefer],
                        "requestBody": body,
                        "responses": {"200": ok(ref("PredictionResponse")), "422": invalid},
                    }
                },
                "/predictions/{prediction_id}": {
                    "put": {
                        "summary": "Predict Idempotent",
                        "description": "Run a single prediction on the model (idempotent creation).",
                        "operationId": "predict_idempotent_predictions__prediction_id__put",
                        "parameters": [pid, prefer],
                        "requestBody": {**body, "required": True},
                        "responses": {"200": ok(ref("PredictionResponse")), "422": invalid},
                    }
                },
                "/predictions/{prediction_id}/cancel": {
                    "post": {
                        "summary": "Cancel",
                        "description": "Cancel a running prediction",
                        "operationId": "cancel_predictions__prediction_id__cancel_post",
                        "parameters": [pid],
                        "responses": {"200": ok({}), "422": invalid},
                    }
                },
                "/shutdown": {
                    "post": {
                        "summary": "Start Shutdown",
                        "operationId": "start_shutdown_shutdown_post",
                        "responses": {"200": ok({})},
                    }
                },
            },
            "components": {"schemas": schemas},
        }

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

    # ------------------------------------------------------------ outputs

    async def _sync_output(self, pred: CogPrediction, value: Any) -> Any:
        """cog's sync ``upload_files``: data URLs, or a multipart PUT to ``output_file_prefix`` + name."""
        if isinstance(value, OutputFile):
            name = posixpath.basename(value.name)
            if pred.output_file_prefix is None:
                return f"data:{guess_mime(name)};base64,{b64encode(value.data).decode()}"
            return await self._put_multipart(pred, pred.output_file_prefix + name, name, value.data)
        if isinstance(value, dict):
            return {k: await self._sync_output(pred, v) for k, v in cast(dict[str, Any], value).items()}
        if isinstance(value, list | tuple):
            return [await self._sync_output(pred, v) for v in cast(Iterable[Any], value)]
        return value

    def _local_output(self, pred: CogPrediction, value: Any) -> Any:
        """Files as the server-local paths cog reports when it has nowhere to upload them."""
        if isinstance(value, OutputFile):
            tmp = "".join(secrets.choice(string.ascii_lowercase + string.digits + "_") for _ in range(8))
            path = f"/tmp/tmp{tmp}/{posixpath.basename(value.name)}"  # noqa: S108 - a fake path, never written
            pred.local_paths[path] = value
            return path
        if isinstance(value, dict):
            return {k: self._local_output(pred, v) for k, v in cast(dict[str, Any], value).items()}
        if isinstance(value, list | tuple):
            return [self._local_output(pred, v) for v in cast(Iterable[Any], value)]
        return value

    async def _upload_output(self, pred: CogPrediction, value: Any) -> Any:
        if isinstance(value, OutputFile):
            return await self._put_raw(pred, value)
        if isinstance(value, dict):
            return {k: await self._upload_output(pred, v) for k, v in cast(dict[str, Any], value).items()}
        if isinstance(value, list | tuple):
            return [await self._upload_output(pred, v) for v in cast(Iterable[Any], value)]
        return value

    async def _put_raw(self, pred: CogPrediction, out: OutputFile) -> str:
        """``put_file_to_signed_endpoint``: raw PUT to ``<upload_url>/<name>``, retried on 408/429/5xx."""
        base = self.upload_url or ""
        name = posixpath.basename(out.name)
        url = (base if base.endswith("/") else base + "/") + name
        headers = {"User-Agent": self.user_agent, **pred.trace_headers}
        if (mime := guess_mime(name)) is not None:
            headers["Content-Type"] = mime
        if pred.id is not None:
            headers["X-Prediction-ID"] = pred.id
        skip = () if mime is not None else ("Content-Type",)
        timeout = aiohttp.ClientTimeout(total=self.upload_timeout_s)
        attempts = 1 + self.upload_retries
        for attempt in range(1, attempts + 1):
            status: int | None = None
            final = url
            try:
                async with self._http.put(
                    url, data=out.data, headers=headers, skip_auto_headers=skip, timeout=timeout
                ) as resp:
                    await resp.read()
                    status, final = resp.status, resp.headers.get("Location") or str(resp.url)
            except (aiohttp.ClientError, TimeoutError):
                status = None
            self._record_upload(UploadAttempt(url, status, headers, len(out.data), pred.key, attempt, False))
            if status is not None and status < 400:
                return urlparse(final)._replace(query="").geturl()  # strip any signing query string
            if status is not None and status not in RETRY_UPLOAD_STATUSES:
                break
            if attempt < attempts:
                await asyncio.sleep(_backoff(attempt, self.upload_backoff_s, 120.0))
        raise _UploadFailed(f"upload of {name} to {url} failed")

    async def _put_multipart(self, pred: CogPrediction, url: str, name: str, data: bytes) -> str:
        """Sync ``output_file_prefix``: ``requests.put(url, files={"file": fh})``, no retries; output is ``url``."""
        form = aiohttp.FormData()
        form.add_field("file", data, filename=name)
        headers = {"User-Agent": REQUESTS_UA, **pred.trace_headers}
        status: int | None = None
        try:
            timeout = aiohttp.ClientTimeout(total=5.0)
            async with self._http.put(url, data=form, headers=headers, timeout=timeout) as resp:
                await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError):
            status = None
        self._record_upload(UploadAttempt(url, status, headers, len(data), pred.key, 1, True))
        if status is None or status >= 400:
            raise _UploadFailed(f"upload of {name} to {url} failed")
        return url

    def _record_upload(self, attempt: UploadAttempt) -> None:
        self._log(self.uploads, self._new_uploads, attempt)

    # ------------------------------------------------------------ running predictions

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _running_pred(self, key: str) -> CogPrediction:
        pred = self.running.get(key)
        if pred is None:
            raise RuntimeError(f"no running prediction {key!r} (running: {sorted(self.running)})")
        return pred

    async def _run(self, pred: CogPrediction, output: Any = _UNSET, logs: str | None = None) -> None:
        if pred.completing or pred.terminal:
            raise RuntimeError(f"prediction {pred.key} is already completing or {pred.status}")
        pred.completing = True
        if output is _UNSET:
            try:
                inp = await resolve_inputs(self.model, dict(pred.model_input), self._fetch)
                output, logs = await asyncio.to_thread(self.model.run, inp)
            except FetchError as exc:
                if not pred.terminal:
                    self._fail(pred, str(exc), "FileNotFoundError")
                return
            except ModelError as exc:
                if not pred.terminal:
                    pred.logs += exc.logs
                    self._fail(pred, str(exc), exc.exc_type)
                return
            except Exception as exc:  # any other predictor exception fails the prediction too, as in cog
                if not pred.terminal:
                    self._fail(pred, str(exc), type(exc).__name__)
                return
            if pred.terminal:  # canceled while the model ran
                return
        if logs:
            self._append_logs(pred, logs)
        pred.raw_output = output
        if pred.upload:
            try:
                rendered = await self._upload_output(pred, output)
            except _UploadFailed as exc:
                if not pred.terminal:
                    self._fail(pred, UPLOAD_ERROR, "cog.server.exceptions.FileUploadError", detail=str(exc))
                return
        else:
            rendered = self._local_output(pred, output)
        if pred.terminal:  # canceled while uploading
            return
        pred.output = rendered
        self._finish(pred, "succeeded")

    async def _fetch(self, url: str) -> InputFile:
        """A file input, fetched before ``run`` as cog downloads inputs before ``predict()``."""
        self.input_fetches.append(url)
        return await fetch_url(self._http, url)

    def _append_logs(self, pred: CogPrediction, text: str) -> None:
        pred.logs += text
        self._emit(pred, "logs")
        self._notify()

    def _fail(self, pred: CogPrediction, error: str, exc_name: str = "Exception", detail: str | None = None) -> None:
        pred.logs += (
            "Traceback (most recent call last):\n"
            '  File "/src/predict.py", line 1, in predict\n'
            f"{exc_name}: {detail or error}\n"
        )
        self._finish(pred, "failed", error=error)

    def _finish(self, pred: CogPrediction, status: str, *, error: str | None = None) -> None:
        pred.status, pred.completed_at = status, _now()
        if error is not None:
            pred.error = error
        if status == "succeeded":
            pred.metrics = {"predict_time": (pred.completed_at - pred.started_at).total_seconds()}
        if self.running.get(pred.key) is pred:
            del self.running[pred.key]  # cog forgets finished predictions
        pred.done.set()
        self._emit(pred, "completed")
        self._notify()

    # ------------------------------------------------------------ driving predictions from tests

    def prediction(self, key: str) -> CogPrediction:
        """The latest run with this key (running or finished); KeyError if none."""
        for pred in reversed(self.history):
            if pred.key == key:
                return pred
        raise KeyError(key)

    async def complete(self, key: str, *, output: Any = _UNSET, logs: str | None = None) -> CogPrediction:
        """Run the model now (or use ``output``/``logs`` instead) and finish; returns the final record.

        Async predictions with an ``upload_url`` upload their files first. The result may be ``failed`` (the
        model raised, or an upload failed) or ``canceled`` (canceled during the upload).
        """
        pred = self._running_pred(key)
        await self._run(pred, output, logs)
        return pred

    async def fail(self, key: str, error: str = "fake: prediction failed") -> CogPrediction:
        """The predictor raises: ``failed`` with ``error``, and a traceback appended to the logs."""
        pred = self._running_pred(key)
        if pred.completing:
            raise RuntimeError(f"prediction {key} is already completing")
        self._fail(pred, error)
        return pred

    async def log(self, key: str, text: str) -> None:
        """The predictor writes to stdout mid-run: logs grow and a ``logs`` webhook is sent (filter permitting)."""
        self._append_logs(self._running_pred(key), text)

    # ------------------------------------------------------------ webhooks

    def _emit(self, pred: CogPrediction, event: str) -> None:
        if pred.webhook is None or event not in pred.events:
            return
        headers = {"Content-Type": "application/json", "User-Agent": self.user_agent, **pred.trace_headers}
        if self.webhook_auth_token:
            headers["Authorization"] = f"Bearer {self.webhook_auth_token}"
        msg = _Message(pred.key, event, pred.webhook, json.dumps(pred.webhook_json()).encode(), headers)
        if self.reorder_webhooks and not msg.terminal:
            pred.held_webhooks.append(msg)
            return
        self._schedule(msg)
        if msg.terminal:
            for held in pred.held_webhooks:
                self._schedule(held)
            pred.held_webhooks.clear()

    def _schedule(self, msg: _Message) -> None:
        """Deliver in the background, after earlier messages for the same prediction."""
        self._chain(msg.key, lambda: self._deliver(msg))

    async def _deliver(self, msg: _Message) -> None:
        attempts = 1 + (self.webhook_retries if msg.terminal else 0)
        for attempt in range(1, attempts + 1):
            status = await self._post(msg.url, msg.body, msg.headers, self.webhook_timeout_s)
            delivery = WebhookDelivery(
                msg.event, status, json.loads(msg.body), msg.key, attempt, msg.url, dict(msg.headers)
            )
            self._log(self.webhook_deliveries, self._new_deliveries, delivery)
            if status is not None and status not in RETRY_WEBHOOK_STATUSES:
                return
            if attempt < attempts:
                await asyncio.sleep(_backoff(attempt, self.webhook_backoff_s, self.webhook_backoff_max_s))

    # ------------------------------------------------------------ awaitable hooks (and FakeServer's)

    async def wait_for_prediction(self, timeout: float = 5.0) -> str:
        """The key of the next prediction started (each returned once, in order)."""
        return await self._next(self._new_predictions, timeout, "new prediction")

    async def wait_for_status(self, key: str, *statuses: str, timeout: float = 5.0) -> CogPrediction:
        """Wait until the latest run with ``key`` is in one of ``statuses`` (default: any terminal one)."""
        wanted = statuses or tuple(TERMINAL)

        def check() -> CogPrediction | None:
            pred = next((p for p in reversed(self.history) if p.key == key), None)
            return pred if pred is not None and pred.status in wanted else None

        return await self._wait(check, timeout, f"status {wanted} for {key}")

    async def wait_for_health(self, status: str, timeout: float = 5.0) -> None:
        await self._wait(lambda: True if self.health == status else None, timeout, f"health {status}")

    async def next_webhook_delivery(self, timeout: float = 5.0) -> WebhookDelivery:
        """The next webhook delivery attempt (each returned once, in order)."""
        return await self._next(self._new_deliveries, timeout, "webhook delivery")

    async def next_upload(self, timeout: float = 5.0) -> UploadAttempt:
        """The next output upload attempt (each returned once, in order)."""
        return await self._next(self._new_uploads, timeout, "upload")

    async def drain_webhooks(self, timeout: float = 5.0) -> None:
        """Wait until every scheduled webhook delivery (with retries) has finished."""
        async with asyncio.timeout(timeout):
            while self._webhook_tasks:
                await asyncio.gather(*list(self._webhook_tasks), return_exceptions=True)


def _backoff(failures: int, base: float, cap: float) -> float:
    """urllib3's Retry backoff after ``failures`` consecutive failures: none after the first, then doubling."""
    return 0.0 if failures <= 1 else min(cap, base * 2 ** (failures - 1))
