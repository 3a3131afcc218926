"""Prometheus metrics, kept with the official client library (``prometheus_client``).

The counters and histograms below count for the life of the process, recorded from wherever the work happens:
provider HTTP calls through :func:`provider_call`, webhooks, audio work, job outcomes. They belong to no
registry of their own: each web app builds its own with :func:`new_registry`, which puts them together with
the process's standard metrics (``process_cpu_seconds_total``, ``process_resident_memory_bytes``,
``python_info``, ...) and the app's gauges read at scrape time (``bot/web/ops.py``). So every app serves the
same process-wide counts, and nothing is registered twice however many bots one process starts (the tests
start many).

Label values are free text but must stay few (model keys, statuses, error kinds), never ids or prompts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import aiohttp
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.registry import Collector

from bot import provider_health
from bot.errors import (
    BotError,
    OutputError,
    ProviderAuthError,
    ProviderInputError,
    ProviderNotFoundError,
    ProviderRateLimitError,
    ProviderUnavailableError,
    SubmissionUncertainError,
)

# The `*_created` series (when each labelled series first appeared) belong to OpenMetrics; in the 0.0.4 text
# format Encore serves they would only be one more gauge per series.
disable_created_metrics()

# Provider calls run from tens of milliseconds (a GET) to many minutes (an ElevenLabs song).
LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
JOB_BUCKETS_S = (5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)

PROVIDER_REQUESTS = Counter(
    "encore_provider_requests_total",
    "HTTP calls to a provider's API, each retry counted.",
    ("provider", "operation"),
    registry=None,
)
PROVIDER_ERRORS = Counter(
    "encore_provider_errors_total",
    "Provider calls that failed, by kind (auth, rate_limited, unavailable, timeout, connection, input, ...).",
    ("provider", "operation", "kind"),
    registry=None,
)
PROVIDER_LATENCY = Histogram(
    "encore_provider_request_duration_seconds",
    "Time from sending a provider call to having its whole answer (or its error).",
    ("provider", "operation"),
    buckets=LATENCY_BUCKETS_S,
    registry=None,
)
WEBHOOKS_RECEIVED = Counter(
    "encore_webhooks_received_total",
    "Requests to the webhook and upload endpoints (replicate, cog, cog_upload), accepted or not.",
    ("source",),
    registry=None,
)
WEBHOOKS_REFUSED = Counter(
    "encore_webhooks_refused_total",
    "Webhook and upload requests refused, by reason (signature, malformed, too_large, token, secret, ...).",
    ("source", "reason"),
    registry=None,
)
AUDIO_CPU = Counter(
    "encore_audio_cpu_seconds_total",
    "CPU time spent on audio work off the event loop (probe, verify, fit, waveform, prepare, stitch).",
    ("work",),
    registry=None,
)
JOBS_FINISHED = Counter(
    "encore_jobs_finished_total",
    "Jobs that reached an outcome since the process started.",
    ("model", "outcome"),
    registry=None,
)
JOB_DURATION = Histogram(
    "encore_job_duration_seconds",
    "Time from queueing a job to its outcome (succeeded: the audio is on disk; failed; canceled).",
    ("model", "outcome"),
    buckets=JOB_BUCKETS_S,
    registry=None,
)
_PROCESS_WIDE: tuple[Collector, ...] = (
    PROVIDER_REQUESTS,
    PROVIDER_ERRORS,
    PROVIDER_LATENCY,
    WEBHOOKS_RECEIVED,
    WEBHOOKS_REFUSED,
    AUDIO_CPU,
    JOBS_FINISHED,
    JOB_DURATION,
)


def new_registry(*collectors: Collector) -> CollectorRegistry:
    """A registry for one app to serve: Encore's counters and histograms, the process and platform
    collectors (CPU, memory, file descriptors, start time; the Python version), then ``collectors``."""
    registry = CollectorRegistry()
    for collector in (*_PROCESS_WIDE, *collectors):
        registry.register(collector)
    ProcessCollector(registry=registry)  # exposes nothing where there is no /proc (not Linux)
    PlatformCollector(registry=registry)
    return registry


def record_job_finished(model: str, outcome: str, duration_s: float | None) -> None:
    """Count one job reaching ``outcome`` (succeeded, failed, canceled) after ``duration_s`` since queued."""
    JOBS_FINISHED.labels(model=model, outcome=outcome).inc()
    if duration_s is not None and duration_s >= 0:
        JOB_DURATION.labels(model=model, outcome=outcome).observe(duration_s)


def webhook_received(source: str) -> None:
    WEBHOOKS_RECEIVED.labels(source=source).inc()


def webhook_refused(source: str, reason: str) -> None:
    WEBHOOKS_REFUSED.labels(source=source, reason=reason).inc()


# -- provider calls ------------------------------------------------------------------------------


def error_kind(exc: BaseException) -> str:
    """A short, low-cardinality name for why a provider call failed."""
    kinds: tuple[tuple[type[BaseException], str], ...] = (
        (SubmissionUncertainError, "uncertain"),
        (ProviderAuthError, "auth"),
        (ProviderRateLimitError, "rate_limited"),
        (ProviderInputError, "input"),
        (ProviderNotFoundError, "not_found"),
        (ProviderUnavailableError, "unavailable"),
        (OutputError, "output"),
        (TimeoutError, "timeout"),
        (aiohttp.ClientError, "connection"),
        (BotError, "error"),
    )
    for kind_type, kind in kinds:
        if isinstance(exc, kind_type):
            return kind
    return "error"


def observe_provider_call(provider: str, operation: str, duration_s: float, *, error: str | None) -> None:
    PROVIDER_REQUESTS.labels(provider=provider, operation=operation).inc()
    PROVIDER_LATENCY.labels(provider=provider, operation=operation).observe(duration_s)
    if error is not None:
        PROVIDER_ERRORS.labels(provider=provider, operation=operation, kind=error).inc()
    provider_health.record_outcome(provider, error)


@dataclass
class ProviderCall:
    """Handed out by :func:`provider_call`; :meth:`fail` marks an answer that is an error without raising."""

    error: str | None = field(default=None)

    def fail(self, kind: str) -> None:
        self.error = kind


@contextmanager
def provider_call(provider: str, operation: str) -> Iterator[ProviderCall]:
    """Time one provider call, count its outcome and note it for ``/healthz``. An exception escaping the
    block is an error of :func:`error_kind`; cancellation is not counted at all."""
    call = ProviderCall()
    started = time.perf_counter()
    try:
        yield call
    except Exception as exc:
        observe_provider_call(provider, operation, time.perf_counter() - started, error=error_kind(exc))
        raise
    observe_provider_call(provider, operation, time.perf_counter() - started, error=call.error)
