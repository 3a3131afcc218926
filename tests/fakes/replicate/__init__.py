"""A strict fake of Replicate's HTTP API (``https://api.replicate.com/v1``) for tests.

A real aiohttp server on ``127.0.0.1:<random port>``. Request bodies are validated against the official
OpenAPI spec (``tests/specs/replicate-openapi.json``) and model inputs against each fake model's input
schema; errors use Replicate's status codes and ``application/problem+json`` bodies. Tests drive predictions
explicitly (``begin``/``progress``/``succeed``/``fail``/``abort``/``hit_deadline``), set ``auto_advance``, or
give a ``timing`` (:class:`RunTiming`, timing.py): then every prediction runs by itself for a seeded, varying
time, printing tqdm progress bars into its logs as a real MusicGen run does. They synchronise by awaiting
hooks (``wait_for_prediction``, ``wait_for_status``, ``next_request``, ``next_webhook_delivery``,
``wait_for_webhook_deliveries``), never by sleeping. Faults: ``inject`` (statuses,
hangs, drops, chosen per request with ``when=``); webhooks can be held back (``hold_webhooks``) to arrive late.
Replicate's rate limits per account are enforced (``rate_limits``: 600 creates and 3,000 other calls in any 60
seconds by default; past them a 429 with Replicate's body, counted in ``throttled``), and ``max_in_flight`` is
the most predictions that were unfinished at once.
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
* ``start``, ``logs`` and ``completed`` webhooks are sent as the filter asks; ``logs`` at most one every 500 ms
  (a later one carries the newest logs; none after ``completed``). Single outputs appear at completion, so
  ``output`` events never fire.
* A model's logs are its own lines (``Using seed …``); the tqdm bar is added by ``progress`` or by ``timing``
  (carriage returns between updates, a newline after the last), not by the model's ``run``.
* Unknown input keys are ignored, as Replicate does; ``null`` for a typed input is a type error.
* Malformed ``Prefer``/``Cancel-After`` headers, JSON or multipart bodies get 400 (real codes unverified).
* Creates answer 201, or 202 when ``Prefer: wait`` ran out before the prediction finished. With
  ``auto_advance``, ``Prefer: wait`` runs the prediction to the end at once; each GET advances one step.
* musicgen logs say ``Using seed <N>`` (no colon), as cog-musicgen's predict.py prints it. A failed run's
  logs end with ``<ExceptionType>: <error>`` (no traceback).

Layout: ``server.py`` (``FakeReplicate``: the app, routes, auth, error answers, ``inject``), ``state.py`` (the
typed base its parts share: settings, records, pagination), ``predictions.py`` (the state machine and the
calls that drive it), ``webhooks.py`` (signing, delivery, holding back), ``files.py`` (the files API),
``records.py`` (``Prediction``, ``StoredFile``, ``WebhookDelivery``), ``timing.py`` (runs that take time, tqdm
lines), ``validation.py`` (the OpenAPI spec and headers) and ``errors.py`` (``Problem`` bodies, ``Fault``).
"""

from tests.fakes._http import RecordedRequest
from tests.fakes.models import (
    MODELS,
    MUSICGEN,
    NONEXISTENT_MODELS,
    RIFFUSION,
    STABLE_AUDIO,
    FakeModel,
    FetchError,
    InputFile,
    ModelError,
    OutputFile,
    run_musicgen,
)

from .errors import PROBLEM, Fault, Problem
from .predictions import PredictionEngine
from .records import TERMINAL, Prediction, StoredFile, WebhookDelivery
from .server import FakeReplicate
from .state import DEFAULT_TOKEN, DEFAULT_WEBHOOK_SECRET, ReplicateState
from .timing import RunTiming, tqdm_line
from .validation import SPEC_PATH, spec_validator
from .webhooks import WebhookSender, sign_webhook

__all__ = [
    "DEFAULT_TOKEN",
    "DEFAULT_WEBHOOK_SECRET",
    "MODELS",
    "MUSICGEN",
    "NONEXISTENT_MODELS",
    "PROBLEM",
    "RIFFUSION",
    "SPEC_PATH",
    "STABLE_AUDIO",
    "TERMINAL",
    "FakeModel",
    "FakeReplicate",
    "Fault",
    "FetchError",
    "InputFile",
    "ModelError",
    "OutputFile",
    "Prediction",
    "PredictionEngine",
    "Problem",
    "RecordedRequest",
    "ReplicateState",
    "RunTiming",
    "StoredFile",
    "WebhookDelivery",
    "WebhookSender",
    "run_musicgen",
    "sign_webhook",
    "spec_validator",
    "tqdm_line",
]
