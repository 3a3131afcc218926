"""The web server against hostile clients, over real HTTP: odd tokens and secrets in paths."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from yarl import URL

from bot.records import JobStatus
from tests.fakes.cog import FakeCog
from tests.integration.conftest import Harness
from tests.integration.test_cog import SECRET, start


@pytest.fixture
async def cog() -> AsyncIterator[FakeCog]:
    async with FakeCog() as server:
        yield server


async def raw_request(port: int, head: bytes) -> bytes:
    """Send ``head`` (a request line and headers, as raw bytes) and read the whole answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        async with asyncio.timeout(5):
            return await reader.read()
    finally:
        writer.close()


def web_port(harness: Harness) -> int:
    assert harness.core is not None
    assert harness.core.web is not None
    assert harness.core.web.port is not None
    return harness.core.web.port


async def test_non_ascii_tokens_and_secrets_are_refused_not_crashed(
    harness: Harness, cog: FakeCog, caplog: pytest.LogCaptureFixture
) -> None:
    await start(harness, cog)
    job = await harness.submit()
    await cog.wait_for_prediction()
    assert harness.settings is not None
    public = str(harness.settings.webhooks.public_url).rstrip("/")
    body = {"id": "x", "status": "succeeded", "output": "data:audio/wav;base64,AAAA"}
    caplog.set_level(logging.INFO)
    async with aiohttp.ClientSession() as session:
        for token in ("%C3%A9t%C3%A9", "%F0%9F%8E%B5" * 8, "%FF%FE", "%ED%A0%80"):  # UTF-8, emoji, bad UTF-8, surrogate
            url = URL(f"{public}/cog/webhooks/{job.id}/{token}", encoded=True)
            async with session.post(url, json=body) as response:
                assert response.status == 401, token
            url = URL(f"{public}/cog/uploads/{token}/out.wav", encoded=True)
            async with session.put(url, data=b"x", headers={"X-Prediction-ID": "p"}) as response:
                assert response.status == 403, token
        # A job id that isn't ASCII, with a newline in it: refused, and logged on one line.
        url = URL(f"{public}/cog/webhooks/%C3%A9%0Aforged/token", encoded=True)
        async with session.post(url, json=body) as response:
            assert response.status == 401
    # Raw bytes that aren't valid in a URL at all: the HTTP parser refuses them.
    for path in (b"/cog/webhooks/" + job.id.encode() + b"/\xc3\xa9", b"/cog/uploads/\xff\xfe/out.wav"):
        answer = await raw_request(web_port(harness), b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request")
    # Replicate's webhook with a signature and id that aren't ASCII: unsigned, so 401.
    payload = b'{"id": "x", "status": "succeeded"}'
    head = (
        b"POST /webhooks/replicate HTTP/1.1\r\nHost: x\r\nwebhook-id: msg_\xc3\xa9\r\nwebhook-timestamp: %d\r\n"
        b"webhook-signature: v1,\xc3\xa9\xff\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
        % (int(time.time()), len(payload))
    )
    answer = await raw_request(web_port(harness), head + payload)
    assert b" 401 " in answer.split(b"\r\n", 1)[0]
    assert (await harness.job(job.id)).status in (JobStatus.SUBMITTED, JobStatus.RUNNING)
    web_records = [r for r in caplog.records if r.name.startswith(("bot.", "aiohttp"))]
    assert not [r for r in web_records if r.exc_info or r.exc_text], "a traceback was logged"
    assert not [r for r in web_records if r.levelno >= logging.ERROR]
    assert all("\n" not in r.getMessage() for r in web_records)
    refused = [r.getMessage() for r in web_records if "refused" in r.getMessage() or "malformed" in r.getMessage()]
    assert len(refused) >= 12
    assert SECRET not in caplog.text


# -- slow clients --------------------------------------------------------------------------------------------

HEADER_TIMEOUT_S = 0.4
BODY_TIMEOUT_S = 0.4
MARGIN_S = 3.0  # a loaded 2-core machine; the point is that the connection does close, not how fast


async def drip(
    writer: asyncio.StreamWriter, data: bytes, *, every_s: float = 0.05, quiet_after_s: float | None = None
) -> None:
    """The slow client: ``data`` one byte at a time (the pause is the client's pace, not a synchronisation),
    going quiet after ``quiet_after_s`` (then the server has read every byte sent before it closes, so its
    answer arrives whole instead of being lost to a reset, whatever the machine's load)."""
    started = time.monotonic()
    for byte in data:
        if writer.is_closing() or (quiet_after_s is not None and time.monotonic() - started >= quiet_after_s):
            return
        writer.write(bytes([byte]))
        try:
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(every_s)


async def answer_then_close(
    port: int, head: bytes, slow: bytes, *, within_s: float, quiet_after_s: float | None = None
) -> tuple[bytes, float]:
    """Send ``head`` at once and ``slow`` byte by byte; the server's whole answer once it closes the
    connection, and how long that took. Fails unless it closes within ``within_s``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(head)
    client = asyncio.create_task(drip(writer, slow, quiet_after_s=quiet_after_s))
    try:
        async with asyncio.timeout(within_s):
            answer = await reader.read()  # b"" ... until the server closes
    finally:
        client.cancel()
        writer.close()
    return answer, time.monotonic() - started


@pytest.fixture
async def slow_bounds(harness: Harness, cog: FakeCog) -> Harness:
    await start(harness, cog, webhooks={"header_timeout_s": HEADER_TIMEOUT_S, "body_timeout_s": BODY_TIMEOUT_S})
    return harness


async def test_headers_sent_slowly_are_cut_off(slow_bounds: Harness) -> None:
    port = web_port(slow_bounds)
    # A slowloris: a request line, then one header byte at a time, never finishing.
    answer, took = await answer_then_close(
        port, b"GET /healthz HTTP/1.1\r\n", b"X-Slow: " + b"a" * 4000, within_s=HEADER_TIMEOUT_S + MARGIN_S
    )
    assert answer == b""  # closed without an answer
    assert took >= HEADER_TIMEOUT_S * 0.9
    # Silence after connecting is cut off too.
    answer, _ = await answer_then_close(port, b"", b"", within_s=HEADER_TIMEOUT_S + MARGIN_S)
    assert answer == b""


async def test_an_idle_keep_alive_connection_is_closed(slow_bounds: Harness) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    answer, _ = await answer_then_close(web_port(slow_bounds), head, b"", within_s=HEADER_TIMEOUT_S + MARGIN_S)
    assert answer.startswith(b"HTTP/1.1 200 OK")  # answered, then closed once idle for the timeout


@pytest.mark.parametrize("route", ["replicate", "cog webhook", "cog upload"])
async def test_bodies_sent_slowly_are_cut_off(slow_bounds: Harness, cog: FakeCog, route: str) -> None:
    job = await slow_bounds.submit()
    key = await cog.wait_for_prediction()
    token = (await slow_bounds.job(job.id)).callback_token
    head = {
        "replicate": b"POST /webhooks/replicate HTTP/1.1\r\n",
        "cog webhook": f"POST /cog/webhooks/{job.id}/{token} HTTP/1.1\r\n".encode(),
        "cog upload": f"PUT /cog/uploads/{SECRET}/out.wav HTTP/1.1\r\nX-Prediction-ID: {key}\r\n".encode(),
    }[route]
    head += b"Host: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    # Still sending when half the time is gone, then quiet: the body is late either way.
    answer, took = await answer_then_close(
        web_port(slow_bounds),
        head,
        b"{" + b" " * 99_999,
        within_s=2 * BODY_TIMEOUT_S + MARGIN_S,
        quiet_after_s=BODY_TIMEOUT_S / 2,
    )
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"request body too slow" in answer
    assert took >= BODY_TIMEOUT_S * 0.9
    assert (await slow_bounds.job(job.id)).status in (JobStatus.SUBMITTED, JobStatus.RUNNING)
    assert not [p for p in (slow_bounds.data_dir / "uploads").rglob("*") if p.is_file()]  # no partial upload kept
