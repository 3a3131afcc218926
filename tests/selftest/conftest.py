"""Fixtures and helpers shared by the fakes' self-tests."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.fakes.discord import DiscordSimulator
from tests.fakes.replicate import FakeReplicate


@pytest.fixture
async def sim() -> AsyncIterator[DiscordSimulator]:
    async with DiscordSimulator() as simulator:
        yield simulator
        simulator.assert_no_validation_failures()


@pytest.fixture
async def fake() -> AsyncIterator[FakeReplicate]:
    async with FakeReplicate() as f:
        yield f


@pytest.fixture
async def http(fake: FakeReplicate) -> AsyncIterator[aiohttp.ClientSession]:
    """A client authorised on the fake Replicate (test_fake_cog.py has its own, plain ``http``)."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {fake.token}"}) as session:
        yield session


@contextlib.asynccontextmanager
async def serve(*routes: web.RouteDef) -> AsyncIterator[str]:
    """Serve ``routes`` on 127.0.0.1 at a free port for the block; yields the base URL (``http://127.0.0.1:<port>``)."""
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def call(
    http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, Any, aiohttp.ClientResponse]:
    """One request: its status, its body (parsed if JSON, else bytes) and the (read) response."""
    async with http.request(method, url, **kwargs) as resp:
        raw = await resp.read()
        return resp.status, (json.loads(raw) if raw and "json" in resp.content_type else raw), resp
