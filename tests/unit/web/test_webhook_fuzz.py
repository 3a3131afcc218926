"""Property-based fuzzing of the Replicate webhook endpoint over real HTTP on loopback.

Whatever arrives (random headers, random bytes, signed random JSON) the endpoint answers with a clear
status (200, 400 or 401, never a 5xx) and the core only ever sees a validated :class:`Prediction`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.providers.base import Prediction
from bot.web.webhooks import SignedWebhookView, WebhookVerifier
from tests.fakes.replicate import sign_webhook

SECRET = "whsec_" + base64.b64encode(b"fuzz-key-fuzz-key-fuzz-key-0123").decode()
STATUSES = ["starting", "processing", "succeeded", "failed", "canceled"]
FUZZ = settings(max_examples=150)  # the rest comes from the 'encore' profile in tests/conftest.py

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
# Bodies shaped like a prediction, with every field possibly wrong: the interesting region for a parser.
prediction_like = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=250) | json_values,
        "status": st.sampled_from(STATUSES) | json_values,
        "output": json_values,
        "error": json_values,
        "logs": json_values,
        "input": json_values,
        "metrics": json_values,
        "created_at": st.sampled_from(["2026-11-21T00:00:00Z", "yesterday", ""]) | json_values,
        "data_removed": json_values,
    },
)
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)


@dataclass
class Endpoint:
    loop: asyncio.AbstractEventLoop
    url: str
    session: aiohttp.ClientSession
    seen: list[Prediction] = field(default_factory=list)

    def post(self, body: bytes, headers: dict[str, str]) -> int:
        async def send() -> int:
            async with self.session.post(self.url, data=body, headers=headers) as response:
                await response.read()
                return response.status

        return self.loop.run_until_complete(send())


@pytest.fixture(scope="module")
def endpoint() -> Iterator[Endpoint]:
    """One real aiohttp server running the production view for the whole module (fast enough to fuzz)."""
    loop = asyncio.new_event_loop()
    seen: list[Prediction] = []

    async def handler(_webhook_id: str, prediction: Prediction) -> bool:
        assert isinstance(prediction, Prediction)
        seen.append(prediction)
        return True

    async def start() -> tuple[web.AppRunner, str, aiohttp.ClientSession]:
        app = web.Application(client_max_size=64 * 1024)
        SignedWebhookView(WebhookVerifier(SECRET), handler, source="replicate", path="/hook").add_to(app)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        timeout = aiohttp.ClientTimeout(total=10)
        return runner, f"http://127.0.0.1:{port}/hook", aiohttp.ClientSession(timeout=timeout)

    runner, url, session = loop.run_until_complete(start())
    try:
        yield Endpoint(loop, url, session, seen)
    finally:
        loop.run_until_complete(session.close())
        loop.run_until_complete(runner.cleanup())
        loop.close()


def signed(body: bytes, webhook_id: str = "msg_fuzz") -> dict[str, str]:
    timestamp = int(time.time())
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign_webhook(SECRET, webhook_id, timestamp, body),
        "content-type": "application/json",
    }


@FUZZ
@given(body=st.binary(max_size=2048), webhook_id=header_text, timestamp=header_text, signature=header_text)
def test_unsigned_garbage_is_a_401(
    endpoint: Endpoint, body: bytes, webhook_id: str, timestamp: str, signature: str
) -> None:
    before = len(endpoint.seen)
    headers = {"webhook-id": webhook_id, "webhook-timestamp": timestamp, "webhook-signature": signature}
    assert endpoint.post(body, headers) == 401
    assert len(endpoint.seen) == before


@FUZZ
@given(body=st.binary(max_size=2048))
def test_signed_random_bytes_never_reach_the_core_unless_they_parse(endpoint: Endpoint, body: bytes) -> None:
    before = len(endpoint.seen)
    status = endpoint.post(body, signed(body))
    if not _is_utf8(body):
        # standardwebhooks decodes the body before it checks the MAC, so a non-UTF-8 body cannot be
        # proven signed: it is refused like a forgery. Replicate only ever sends UTF-8 JSON.
        assert status == 401
    else:
        assert status == (200 if _is_valid_prediction(body) else 400)
    assert len(endpoint.seen) == before + (1 if status == 200 else 0)


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@FUZZ
@given(document=prediction_like | json_values)
def test_signed_random_json_is_validated_at_the_edge(endpoint: Endpoint, document: object) -> None:
    body = json.dumps(document).encode()
    before = len(endpoint.seen)
    status = endpoint.post(body, signed(body))
    valid = _is_valid_prediction(body)
    assert status == (200 if valid else 400)
    assert len(endpoint.seen) == before + (1 if valid else 0)
    if valid:
        parsed = endpoint.seen[-1]
        # Independent of the model: a prediction we act on has a sane id and a known status.
        assert isinstance(document, dict)
        assert isinstance(document["id"], str)
        assert 1 <= len(document["id"]) <= 200
        assert document["status"] in STATUSES
        assert parsed.id == document["id"]
        assert parsed.status == document["status"]


def _is_valid_prediction(body: bytes) -> bool:
    """The oracle: the same pydantic model the edge uses, applied independently of the server."""
    try:
        Prediction.model_validate_json(body)
    except ValueError:
        return False
    return True


@settings(FUZZ, max_examples=20)
@given(extra=st.integers(min_value=1, max_value=4096))
def test_bodies_over_the_limit_are_a_413(endpoint: Endpoint, extra: int) -> None:
    body = json.dumps({"id": "p", "status": "succeeded", "logs": "x" * (64 * 1024 + extra)}).encode()
    assert endpoint.post(body, signed(body)) == 413
