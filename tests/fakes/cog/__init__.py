"""A strict fake of one self-hosted Cog model server (cog 0.13.7's Python HTTP server) for tests.

Contract: tests/specs/cog.md. A real aiohttp server on ``127.0.0.1:<random port>`` serving ONE
fake model (default: musicgen from ``tests.fakes.models``). Paths have no ``/v1`` prefix and no auth.
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

Layout: ``server.py`` (``FakeCog``: the app, setup and health, routes, error answers, ``inject``),
``state.py`` (the typed base its parts share: settings and records), ``predictions.py`` (running a
prediction and the calls that drive it), ``webhooks.py`` (delivery and retries), ``outputs.py`` (data URLs,
local paths, uploads), ``records.py`` (``CogPrediction``, ``WebhookDelivery``, ``UploadAttempt``),
``validation.py`` (request models and FastAPI's 422 lists), ``responses.py`` (JSON answers, ``Fault``) and
``openapi.py`` (the ``/openapi.json`` document).
"""

from tests.fakes._http import RecordedRequest

from .openapi import openapi_document
from .outputs import RETRY_UPLOAD_STATUSES, CogOutputs, guess_mime
from .predictions import UPLOAD_ERROR, CogRunner
from .records import TERMINAL, CogPrediction, UploadAttempt, WebhookDelivery
from .responses import Fault
from .server import NOID_PREFIX, FakeCog
from .state import REQUESTS_UA, CogState
from .validation import EVENTS, ParsedRequest, WebhookEvent, WebhookUrl, fastapi_errors, input_model, request_model
from .webhooks import RETRY_WEBHOOK_STATUSES, CogWebhooks

__all__ = [
    "EVENTS",
    "NOID_PREFIX",
    "REQUESTS_UA",
    "RETRY_UPLOAD_STATUSES",
    "RETRY_WEBHOOK_STATUSES",
    "TERMINAL",
    "UPLOAD_ERROR",
    "CogOutputs",
    "CogPrediction",
    "CogRunner",
    "CogState",
    "CogWebhooks",
    "FakeCog",
    "Fault",
    "ParsedRequest",
    "RecordedRequest",
    "UploadAttempt",
    "WebhookDelivery",
    "WebhookEvent",
    "WebhookUrl",
    "fastapi_errors",
    "guess_mime",
    "input_model",
    "openapi_document",
    "request_model",
]
