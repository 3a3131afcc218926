"""Prometheus metrics: a small in-process registry, rendered in the text exposition format 0.0.4.

Code records into the module-level metrics below (counters and histograms live for the process);
``/metrics`` renders them together with gauges read at scrape time (jobs from SQLite, the gateway).
Provider HTTP calls are recorded by the providers themselves through :func:`provider_call`, which also
keeps each provider's last success and last error for ``/healthz``.

Label values are free text but must stay few (model keys, statuses, error kinds), never ids or prompts.
"""

from __future__ import annotations

import abc
import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import aiohttp

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

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Provider calls run from tens of milliseconds (a GET) to many minutes (an ElevenLabs song).
LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
JOB_BUCKETS_S = (5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _labels_text(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{name}="{_escape_label(value)}"' for name, value in labels.items()) + "}"


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class Family:
    """One metric family as exposed: ``# HELP``, ``# TYPE`` and its samples."""

    name: str
    type: str  # counter | gauge | histogram | untyped
    help: str
    samples: Sequence[Sample] = ()

    def render(self) -> str:
        lines = [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.type}"]
        lines.extend(f"{s.name}{_labels_text(s.labels)} {format_value(s.value)}" for s in self.samples)
        return "\n".join(lines) + "\n"


def gauge(name: str, help: str, values: Iterable[tuple[Mapping[str, str], float]]) -> Family:
    """A gauge family of values read just now (e.g. from the database at scrape time)."""
    return Family(name, "gauge", help, [Sample(name, dict(labels), value) for labels, value in values])


class _Metric(abc.ABC):
    type = "untyped"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help
        self.label_names = tuple(labels)

    def _key(self, labels: Mapping[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {tuple(labels)}")
        return tuple(str(labels[name]) for name in self.label_names)

    def _labels(self, key: tuple[str, ...]) -> dict[str, str]:
        return dict(zip(self.label_names, key, strict=True))

    @abc.abstractmethod
    def family(self) -> Family:
        """This metric's samples, for exposition."""


class Counter(_Metric):
    type = "counter"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        if not name.endswith("_total"):
            raise ValueError("counter names end in _total")
        super().__init__(name, help, labels)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("counters only go up")
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def family(self) -> Family:
        samples = [Sample(self.name, self._labels(key), v) for key, v in sorted(self._values.items())]
        # The family name drops the _total suffix in OpenMetrics; 0.0.4 names the family as the sample.
        return Family(self.name, self.type, self.help, samples)


@dataclass
class _HistogramSeries:
    counts: list[int]
    sum: float = 0.0
    count: int = 0


class Histogram(_Metric):
    type = "histogram"

    def __init__(
        self, name: str, help: str, labels: Sequence[str] = (), *, buckets: Sequence[float] = LATENCY_BUCKETS_S
    ) -> None:
        if "le" in labels:
            raise ValueError("'le' is reserved for histogram buckets")
        super().__init__(name, help, labels)
        self.buckets = tuple(sorted(float(b) for b in buckets))
        self._series: dict[tuple[str, ...], _HistogramSeries] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _HistogramSeries(counts=[0] * len(self.buckets))
        for index, bound in enumerate(self.buckets):
            if value <= bound:
                series.counts[index] += 1
        series.sum += value
        series.count += 1

    def count(self, **labels: str) -> int:
        series = self._series.get(self._key(labels))
        return series.count if series else 0

    def family(self) -> Family:
        samples: list[Sample] = []
        for key, series in sorted(self._series.items()):
            labels = self._labels(key)
            for bound, cumulative in zip(self.buckets, series.counts, strict=True):
                samples.append(Sample(f"{self.name}_bucket", {**labels, "le": format_value(bound)}, cumulative))
            samples.append(Sample(f"{self.name}_bucket", {**labels, "le": "+Inf"}, series.count))
            samples.append(Sample(f"{self.name}_sum", labels, series.sum))
            samples.append(Sample(f"{self.name}_count", labels, series.count))
        return Family(self.name, self.type, self.help, samples)


_M = TypeVar("_M", bound=_Metric)


class Registry:
    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def _add(self, metric: _M) -> _M:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} is registered twice")
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        return self._add(Counter(name, help, labels))

    def histogram(
        self, name: str, help: str, labels: Sequence[str] = (), *, buckets: Sequence[float] = LATENCY_BUCKETS_S
    ) -> Histogram:
        return self._add(Histogram(name, help, labels, buckets=buckets))

    def render(self, extra: Iterable[Family] = ()) -> str:
        """Every registered metric, then ``extra`` families, in the text format."""
        families = [metric.family() for metric in self._metrics.values()]
        return "".join(family.render() for family in (*families, *extra))


REGISTRY = Registry()

PROVIDER_REQUESTS = REGISTRY.counter(
    "encore_provider_requests_total", "HTTP calls to a provider's API, each retry counted.", ("provider", "operation")
)
PROVIDER_ERRORS = REGISTRY.counter(
    "encore_provider_errors_total",
    "Provider calls that failed, by kind (auth, rate_limited, unavailable, timeout, connection, input, ...).",
    ("provider", "operation", "kind"),
)
PROVIDER_LATENCY = REGISTRY.histogram(
    "encore_provider_request_duration_seconds",
    "Time from sending a provider call to having its whole answer (or its error).",
    ("provider", "operation"),
)
WEBHOOKS_RECEIVED = REGISTRY.counter(
    "encore_webhooks_received_total",
    "Requests to the webhook and upload endpoints (replicate, cog, cog_upload), accepted or not.",
    ("source",),
)
WEBHOOKS_REFUSED = REGISTRY.counter(
    "encore_webhooks_refused_total",
    "Webhook and upload requests refused, by reason (signature, malformed, too_large, token, secret, ...).",
    ("source", "reason"),
)
AUDIO_CPU = REGISTRY.counter(
    "encore_audio_cpu_seconds_total",
    "CPU time spent on audio work off the event loop (probe, verify, fit, waveform, prepare, stitch).",
    ("work",),
)
JOBS_FINISHED = REGISTRY.counter(
    "encore_jobs_finished_total", "Jobs that reached an outcome since the process started.", ("model", "outcome")
)
JOB_DURATION = REGISTRY.histogram(
    "encore_job_duration_seconds",
    "Time from queueing a job to its outcome (succeeded: the audio is on disk; failed; canceled).",
    ("model", "outcome"),
    buckets=JOB_BUCKETS_S,
)


def record_job_finished(model: str, outcome: str, duration_s: float | None) -> None:
    """Count one job reaching ``outcome`` (succeeded, failed, canceled) after ``duration_s`` since queued."""
    JOBS_FINISHED.inc(model=model, outcome=outcome)
    if duration_s is not None and duration_s >= 0:
        JOB_DURATION.observe(duration_s, model=model, outcome=outcome)


def webhook_received(source: str) -> None:
    WEBHOOKS_RECEIVED.inc(source=source)


def webhook_refused(source: str, reason: str) -> None:
    WEBHOOKS_REFUSED.inc(source=source, reason=reason)


# -- provider calls ------------------------------------------------------------------------------

# Error kinds after which the provider itself is fine: it answered, the request was the problem.
_ANSWERED_KINDS = frozenset({"input", "not_found", "busy"})


@dataclass
class ProviderHealth:
    """What ``/healthz`` reports per provider (wall-clock times, Unix seconds)."""

    last_ok_at: float | None = None
    last_error_at: float | None = None
    last_error: str | None = None


_HEALTH: dict[str, ProviderHealth] = {}


def provider_health(provider: str) -> ProviderHealth:
    return _HEALTH.get(provider) or ProviderHealth()


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
    PROVIDER_REQUESTS.inc(provider=provider, operation=operation)
    PROVIDER_LATENCY.observe(duration_s, provider=provider, operation=operation)
    health = _HEALTH.setdefault(provider, ProviderHealth())
    if error is not None:
        PROVIDER_ERRORS.inc(provider=provider, operation=operation, kind=error)
    if error is None or error in _ANSWERED_KINDS:
        health.last_ok_at = time.time()
    else:
        health.last_error_at = time.time()
        health.last_error = error


@dataclass
class ProviderCall:
    """Handed out by :func:`provider_call`; :meth:`fail` marks an answer that is an error without raising."""

    error: str | None = field(default=None)

    def fail(self, kind: str) -> None:
        self.error = kind


@contextmanager
def provider_call(provider: str, operation: str) -> Iterator[ProviderCall]:
    """Time one provider call and count its outcome. An exception escaping the block is an error
    of :func:`error_kind`; cancellation is not counted at all."""
    call = ProviderCall()
    started = time.perf_counter()
    try:
        yield call
    except Exception as exc:
        observe_provider_call(provider, operation, time.perf_counter() - started, error=error_kind(exc))
        raise
    observe_provider_call(provider, operation, time.perf_counter() - started, error=call.error)
