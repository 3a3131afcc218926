"""Metrics as Encore uses prometheus_client render valid exposition text; provider calls are counted by outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily

from bot import metrics
from bot.errors import ProviderAuthError, ProviderInputError, ProviderUnavailableError, SubmissionUncertainError
from bot.provider_health import provider_health
from tests.promparse import ExpositionError, parse


class Depth:
    """A collector of a gauge read at scrape time, as ``/metrics`` reads the jobs."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("t_depth", "Depth.", value=3.0)


def test_counters_histograms_and_gauges_render_as_valid_exposition() -> None:
    registry = CollectorRegistry()
    calls = Counter("t_calls_total", "Calls.\nTwo lines, a \\ too.", ("kind",), registry=registry)
    latency = Histogram("t_latency_seconds", "Latency.", ("op",), buckets=(0.1, 1.0), registry=registry)
    registry.register(Depth())
    calls.labels(kind='say "hi"\n\\').inc()
    calls.labels(kind="plain").inc(2)
    for value in (0.05, 0.5, 5.0):
        latency.labels(op="get").observe(value)
    text = generate_latest(registry).decode()

    exposition = parse(text)
    assert exposition.types == {"t_calls_total": "counter", "t_latency_seconds": "histogram", "t_depth": "gauge"}
    assert exposition.value("t_calls_total", kind='say "hi"\n\\') == 1
    assert exposition.value("t_calls_total", kind="plain") == 2
    assert [exposition.value("t_latency_seconds_bucket", op="get", le=le) for le in ("0.1", "1", "+Inf")] == [1, 2, 3]
    assert exposition.value("t_latency_seconds_count", op="get") == 3
    assert exposition.value("t_latency_seconds_sum", op="get") == pytest.approx(5.55)
    assert exposition.value("t_depth") == 3
    assert "# HELP t_calls_total Calls.\\nTwo lines, a \\\\ too." in text


def test_the_parser_refuses_what_prometheus_refuses() -> None:
    for bad in (
        "x 1\n",  # no TYPE
        '# TYPE x gauge\nx{a="b\\t"} 1\n',  # bad escape
        "# TYPE x gauge\nx 1\nx 2\n",  # a series twice
        "# TYPE x gauge\nx one\n",
        '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_count 1\nh_sum 1\n',
    ):
        with pytest.raises(ExpositionError):
            parse(bad)


def test_the_parser_reads_le_as_a_number_as_prometheus_does() -> None:
    text = '# TYPE h histogram\nh_bucket{le="1.0"} 1\nh_bucket{le="+Inf"} 1\nh_count 1\nh_sum 1\n'
    assert parse(text).value("h_bucket", le="1") == parse(text).value("h_bucket", le="1.0") == 1
    with pytest.raises(ExpositionError, match="twice"):
        parse('# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="1.0"} 1\nh_bucket{le="+Inf"} 1\nh_count 1\n')


def test_labels_must_match_the_declaration() -> None:
    registry = CollectorRegistry()
    counter = Counter("t_total", "T.", ("a",), registry=registry)
    with pytest.raises(ValueError, match="Incorrect label names"):
        counter.labels(b="x")
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Counter("t_total", "T.", registry=registry)
    Counter("t_calls", "T.", registry=registry).inc()  # a counter is exposed as ..._total however declared
    assert parse(generate_latest(registry).decode()).types["t_calls_total"] == "counter"


def test_every_app_has_a_registry_of_its_own_serving_the_process_counts() -> None:
    first, second = metrics.new_registry(), metrics.new_registry()  # two bots in one process: no clash
    labels = {"source": "unit-test"}
    before = first.get_sample_value("encore_webhooks_received_total", labels) or 0.0
    metrics.webhook_received("unit-test")
    assert first.get_sample_value("encore_webhooks_received_total", labels) == before + 1
    assert second.get_sample_value("encore_webhooks_received_total", labels) == before + 1


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ProviderAuthError(), "auth"),
        (ProviderInputError(), "input"),
        (ProviderUnavailableError(), "unavailable"),
        (SubmissionUncertainError(), "uncertain"),
        (TimeoutError(), "timeout"),
        (aiohttp.ClientConnectionError(), "connection"),
        (RuntimeError(), "error"),
    ],
)
def test_error_kinds(error: Exception, kind: str) -> None:
    assert metrics.error_kind(error) == kind


def test_provider_calls_are_counted_with_their_outcome_and_health() -> None:
    registry = metrics.new_registry()
    labels = {"provider": "unit-test", "operation": "get"}

    def sample(name: str, **more: str) -> float:
        return registry.get_sample_value(name, labels | more) or 0.0

    before = sample("encore_provider_requests_total")
    with metrics.provider_call("unit-test", "get"):
        pass
    assert provider_health("unit-test").last_ok_at is not None
    with pytest.raises(ProviderUnavailableError), metrics.provider_call("unit-test", "get"):
        raise ProviderUnavailableError
    with metrics.provider_call("unit-test", "get") as call:
        call.fail("busy")  # the server answered: counted as an error, but the provider is fine
    health = provider_health("unit-test")
    assert (health.last_error, health.last_error_at is not None) == ("unavailable", True)
    with pytest.raises(asyncio.CancelledError), metrics.provider_call("unit-test", "get"):
        raise asyncio.CancelledError  # not an outcome of the call: not counted
    assert sample("encore_provider_requests_total") == before + 3
    assert sample("encore_provider_errors_total", kind="unavailable") >= 1
    assert sample("encore_provider_errors_total", kind="busy") >= 1
    assert sample("encore_provider_request_duration_seconds_count") == before + 3
