"""The web server against hostile clients, over real HTTP: odd tokens and secrets in paths."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from yarl import URL

from bot.jobs.models import JobStatus
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
