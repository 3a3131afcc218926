"""The metrics registry renders valid exposition text; provider calls are counted by outcome."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from bot import metrics
from bot.errors import ProviderAuthError, ProviderInputError, ProviderUnavailableError, SubmissionUncertainError
from bot.metrics import Registry, gauge
from tests.promparse import ExpositionError, parse


def test_counters_histograms_and_gauges_render_as_valid_exposition() -> None:
    registry = Registry()
    calls = registry.counter("t_calls_total", "Calls.\nTwo lines, a \\ too.", ("kind",))
    latency = registry.histogram("t_latency_seconds", "Latency.", ("op",), buckets=(0.1, 1.0))
    calls.inc(kind='say "hi"\n\\')
    calls.inc(2, kind="plain")
    for value in (0.05, 0.5, 5.0):
        latency.observe(value, op="get")
    text = registry.render([gauge("t_depth", "Depth.", [({}, 3.0)])])

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


def test_labels_must_match_the_declaration() -> None:
    registry = Registry()
    counter = registry.counter("t_total", "T.", ("a",))
    with pytest.raises(ValueError, match="takes labels"):
        counter.inc(b="x")
    with pytest.raises(ValueError, match="twice"):
        registry.counter("t_total", "T.")
    with pytest.raises(ValueError, match="_total"):
        registry.counter("t_calls", "T.")


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
    labels = {"provider": "unit-test", "operation": "get"}
    before = metrics.PROVIDER_REQUESTS.value(**labels)
    with metrics.provider_call("unit-test", "get"):
        pass
    assert metrics.provider_health("unit-test").last_ok_at is not None
    with pytest.raises(ProviderUnavailableError), metrics.provider_call("unit-test", "get"):
        raise ProviderUnavailableError
    with metrics.provider_call("unit-test", "get") as call:
        call.fail("busy")  # the server answered: counted as an error, but the provider is fine
    health = metrics.provider_health("unit-test")
    assert (health.last_error, health.last_error_at is not None) == ("unavailable", True)
    with pytest.raises(asyncio.CancelledError), metrics.provider_call("unit-test", "get"):
        raise asyncio.CancelledError  # not an outcome of the call: not counted
    assert metrics.PROVIDER_REQUESTS.value(**labels) == before + 3
    assert metrics.PROVIDER_ERRORS.value(**labels, kind="unavailable") >= 1
    assert metrics.PROVIDER_ERRORS.value(**labels, kind="busy") >= 1
    assert metrics.PROVIDER_LATENCY.count(**labels) == before + 3
