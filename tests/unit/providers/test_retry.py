"""The providers' one retry policy, over real HTTP against the fakes: how long it waits (backoff, Retry-After,
caps), when it gives up, and that a create or a song is repeated only when its answer proves nothing was made."""

from __future__ import annotations

import math
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from bot import metrics
from bot.errors import ProviderRateLimitError, ProviderUnavailableError, SubmissionUncertainError
from bot.providers.elevenlabs import ElevenLabsClient
from bot.providers.replicate import ReplicateClient
from bot.providers.retry import RetryPolicy, retry_after_s
from tests.fakes._http import RecordedRequest
from tests.fakes.elevenlabs import FakeElevenLabs
from tests.fakes.models import MUSICGEN
from tests.fakes.replicate import FakeReplicate

MUSICGEN_REF = f"{MUSICGEN.ref}:{MUSICGEN.versions[0]}"
INPUT: dict[str, Any] = {"prompt": "rain on a tin roof", "duration": 1}
READ_TIMEOUT_S = 0.3


@pytest.fixture
async def fake() -> AsyncIterator[FakeReplicate]:
    async with FakeReplicate() as server:
        yield server


@pytest.fixture
async def eleven() -> AsyncIterator[FakeElevenLabs]:
    async with FakeElevenLabs() as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=None, connect=2.0, sock_read=READ_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        yield http


def replicate(session: aiohttp.ClientSession, api_base: str, token: str, **options: Any) -> ReplicateClient:
    return ReplicateClient(session, api_base=api_base, token=token, **{"retry_base_s": 0.001, **options})


def requests_to(fake: FakeReplicate | FakeElevenLabs, method: str, path: str) -> list[RecordedRequest]:
    return [r for r in fake.requests if r.method == method and r.path == path]


def creates_counted() -> float:
    """``encore_provider_requests_total{provider="replicate",operation="create"}``: every try counts."""
    registry = CollectorRegistry()
    registry.register(metrics.PROVIDER_REQUESTS)
    labels = {"provider": "replicate", "operation": "create"}
    return registry.get_sample_value("encore_provider_requests_total", labels) or 0.0


# -- how long it waits -----------------------------------------------------------------------------


def test_retry_after_reads_seconds_and_http_dates() -> None:
    soon = datetime.now(UTC) + timedelta(seconds=90)
    assert retry_after_s({"Retry-After": "7"}) == 7.0
    assert retry_after_s({"Retry-After": "-3"}) == 0.0
    assert 80 < (retry_after_s({"Retry-After": format_datetime(soon, usegmt=True)}) or 0) <= 90
    assert retry_after_s({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # already past
    # "-0000" makes parsedate_to_datetime return a naive datetime: read as GMT, not a TypeError.
    assert retry_after_s({"Retry-After": "Wed, 21 Oct 2015 07:28:00 -0000"}) == 0.0
    assert retry_after_s({"Retry-After": "soon"}) is None
    assert retry_after_s({}) is None


def test_backoff_doubles_with_jitter_up_to_its_cap_and_retry_after_wins_up_to_its_own() -> None:
    policy = RetryPolicy(retries=8, base_s=0.5, max_s=4.0, retry_after_max_s=10.0)
    for retry in range(8):
        ceiling = min(4.0, 0.5 * 2**retry)
        waits = [policy.wait_s(retry, ProviderUnavailableError()) for _ in range(200)]
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits)
        assert len(set(waits)) > 1  # jittered, so a crowd of clients doesn't retry in step
    assert policy.wait_s(0, ProviderRateLimitError(retry_after_s=7.0)) == 7.0
    assert policy.wait_s(5, ProviderRateLimitError(retry_after_s=3600.0)) == 10.0
    assert 0.25 <= policy.wait_s(0, ProviderRateLimitError(retry_after_s=None)) <= 0.5


async def test_a_read_waits_as_long_as_retry_after_asks(fake: FakeReplicate, session: aiohttp.ClientSession) -> None:
    client = replicate(session, fake.base_url, fake.token)
    prediction = await client.submit(MUSICGEN_REF, INPUT)
    fake.inject(method="GET", path=f"/predictions/{prediction.id}$", status=429, headers={"Retry-After": "1"})

    assert (await client.get(prediction.id)).id == prediction.id

    throttled, retried = requests_to(fake, "GET", f"/v1/predictions/{prediction.id}")
    assert retried.at - throttled.at >= 0.95  # not the 1-2 ms backoff of retry_base_s


async def test_a_long_retry_after_is_capped(fake: FakeReplicate, session: aiohttp.ClientSession) -> None:
    client = replicate(session, fake.base_url, fake.token, retry_max_s=0.2)
    prediction = await client.submit(MUSICGEN_REF, INPUT)
    fake.inject(method="GET", path=f"/predictions/{prediction.id}$", status=429, headers={"Retry-After": "3600"})

    assert (await client.get(prediction.id)).id == prediction.id  # within the test's timeout, not in an hour

    throttled, retried = requests_to(fake, "GET", f"/v1/predictions/{prediction.id}")
    assert retried.at - throttled.at >= 0.19


async def test_a_retry_after_date_without_a_zone_is_read_as_gmt(
    fake: FakeReplicate, session: aiohttp.ClientSession
) -> None:
    client = replicate(session, fake.base_url, fake.token)
    prediction = await client.submit(MUSICGEN_REF, INPUT)
    past = {"Retry-After": "Wed, 21 Oct 2015 07:28:00 -0000"}  # an RFC 2822 date the parser returns naive
    fake.inject(method="GET", path=f"/predictions/{prediction.id}$", status=429, headers=past)

    assert (await client.get(prediction.id)).id == prediction.id
    assert len(requests_to(fake, "GET", f"/v1/predictions/{prediction.id}")) == 2


# -- when it gives up ------------------------------------------------------------------------------


async def test_reads_give_up_after_max_retries(fake: FakeReplicate, session: aiohttp.ClientSession) -> None:
    client = replicate(session, fake.base_url, fake.token, max_retries=2)
    prediction = await client.submit(MUSICGEN_REF, INPUT)
    fake.inject(method="GET", path=f"/predictions/{prediction.id}$", status=503, times=None)

    with pytest.raises(ProviderUnavailableError):
        await client.get(prediction.id)
    assert len(requests_to(fake, "GET", f"/v1/predictions/{prediction.id}")) == 3  # 1 + max_retries


async def test_a_hung_read_is_retried(fake: FakeReplicate, session: aiohttp.ClientSession) -> None:
    client = replicate(session, fake.base_url, fake.token)
    prediction = await client.submit(MUSICGEN_REF, INPUT)
    fake.inject(method="GET", path=f"/predictions/{prediction.id}$", status=None, delay_s=READ_TIMEOUT_S * 3)

    assert (await client.get(prediction.id)).id == prediction.id
    assert len(requests_to(fake, "GET", f"/v1/predictions/{prediction.id}")) == 2


# -- creates: repeated only when nothing was made --------------------------------------------------


async def test_a_refused_create_is_retried_and_makes_one_prediction(
    fake: FakeReplicate, session: aiohttp.ClientSession
) -> None:
    client = replicate(session, fake.base_url, fake.token, max_retries=3)
    fake.inject(method="POST", path="^/v1/predictions$", status=429, headers={"Retry-After": "0"}, times=2)

    prediction = await client.submit(MUSICGEN_REF, INPUT)

    assert len(requests_to(fake, "POST", "/v1/predictions")) == 3
    assert list(fake.predictions) == [prediction.id]


async def test_a_create_refused_past_the_retries_says_so(fake: FakeReplicate, session: aiohttp.ClientSession) -> None:
    client = replicate(session, fake.base_url, fake.token, max_retries=1)
    fake.inject(method="POST", path="^/v1/predictions$", status=429, headers={"Retry-After": "0"}, times=None)

    with pytest.raises(ProviderRateLimitError):
        await client.submit(MUSICGEN_REF, INPUT)
    assert len(requests_to(fake, "POST", "/v1/predictions")) == 2
    assert fake.predictions == {}


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 500},
        {"status": 503},
        {"status": None, "drop": True},  # the connection closed before an answer
        {"status": None, "drop_after_create": True},  # made, then the answer was lost
        {"status": None, "delay_s": READ_TIMEOUT_S * 3},  # no answer in time (it lands later)
    ],
    ids=["500", "503", "dropped", "dropped-after-create", "timed-out"],
)
async def test_a_create_that_may_have_landed_is_not_repeated(
    fake: FakeReplicate, session: aiohttp.ClientSession, fault: dict[str, Any]
) -> None:
    client = replicate(session, fake.base_url, fake.token, max_retries=4)
    fake.inject(method="POST", path="^/v1/predictions$", **fault)

    with pytest.raises(SubmissionUncertainError):
        await client.submit(MUSICGEN_REF, INPUT)
    assert len(requests_to(fake, "POST", "/v1/predictions")) == 1  # the caller looks for it before creating again


async def test_a_create_that_never_connected_is_retried(session: aiohttp.ClientSession) -> None:
    with socket.socket() as sock:  # a port nobody listens on: every connection is refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = replicate(session, f"http://127.0.0.1:{port}/v1", "token", max_retries=2)
    before = creates_counted()

    with pytest.raises(ProviderUnavailableError, match="connect"):
        await client.submit(MUSICGEN_REF, INPUT)
    assert creates_counted() - before == 3  # 1 + max_retries: nothing could have been made


async def test_a_file_upload_is_retried_only_when_refused(
    fake: FakeReplicate, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    client = replicate(session, fake.base_url, fake.token, max_retries=3)
    clip = tmp_path / "clip.wav"
    clip.write_bytes(b"RIFF" + bytes(300 * 1024))  # over the data-URL size: a real upload
    fake.inject(method="POST", path="^/v1/files$", status=429, headers={"Retry-After": "0"})

    assert (await client.upload(clip)).startswith("http")
    assert len(requests_to(fake, "POST", "/v1/files")) == 2

    fake.inject(method="POST", path="^/v1/files$", status=500)
    with pytest.raises(ProviderUnavailableError):
        await client.upload(clip)
    assert len(requests_to(fake, "POST", "/v1/files")) == 3  # one more: a 500 may have stored it


# -- ElevenLabs: a song is one long call; only a refusal is repeated -------------------------------


def elevenlabs(session: aiohttp.ClientSession, fake: FakeElevenLabs, **options: Any) -> ElevenLabsClient:
    return ElevenLabsClient(session, api_base=fake.base_url, api_key=fake.api_key, **{"retry_base_s": 0.001, **options})


async def test_elevenlabs_waits_as_long_as_retry_after_asks(
    eleven: FakeElevenLabs, session: aiohttp.ClientSession
) -> None:
    client = elevenlabs(session, eleven)
    eleven.inject("system_busy", path="/v1/music/plan$", retry_after=1)

    plan = await client.plan("warm lofi beat", length_ms=10_000)

    assert plan.get("sections")
    busy, retried = requests_to(eleven, "POST", "/v1/music/plan")
    assert retried.at - busy.at >= 0.95


async def test_elevenlabs_refusals_give_up_after_max_retries(
    eleven: FakeElevenLabs, session: aiohttp.ClientSession
) -> None:
    client = elevenlabs(session, eleven, max_retries=2)
    eleven.inject("concurrent_limit_exceeded", path="/v1/music/plan$", retry_after=0, times=None)

    with pytest.raises(ProviderRateLimitError) as refused:
        await client.plan("warm lofi beat")
    assert "making as many songs" in refused.value.user_message
    assert len(requests_to(eleven, "POST", "/v1/music/plan")) == 3


@pytest.mark.parametrize("error", [500, 503], ids=str)
async def test_a_song_that_may_have_been_made_is_not_repeated(
    eleven: FakeElevenLabs, session: aiohttp.ClientSession, tmp_path: Path, error: int
) -> None:
    client = elevenlabs(session, eleven, max_retries=3)
    eleven.inject(error, path="/v1/music/detailed$")

    with pytest.raises(ProviderUnavailableError):
        await client.compose(
            {"prompt": "warm lofi beat", "music_length_ms": 10_000, "model_id": "music_v1"},
            tmp_path / "song.mp3",
            output_format="mp3_44100_128",
            length_s=10.0,
        )
    assert len(requests_to(eleven, "POST", "/v1/music/detailed")) == 1  # a song costs credits: never twice


async def test_a_call_that_succeeds_at_once_costs_next_to_nothing() -> None:
    """Almost every provider call succeeds at once (a poll makes one or more a second): the policy adds no
    machinery to those. Measured in this thread's CPU time, the best of several rounds."""
    policy = RetryPolicy(retries=4, base_s=0.5, max_s=30.0, retry_after_max_s=30.0)

    async def answer() -> int:
        return 1

    async def per_call_s(call: Callable[[], Awaitable[int]], rounds: int = 5, calls: int = 2000) -> float:
        best = math.inf
        for _ in range(rounds):
            start = time.thread_time()
            for _ in range(calls):
                await call()
            best = min(best, (time.thread_time() - start) / calls)
        return best

    direct = await per_call_s(answer)
    through_policy = await per_call_s(lambda: policy.call(answer, retry_if=lambda _: True, what="a read"))
    assert through_policy - direct < 8e-6, (through_policy, direct)
