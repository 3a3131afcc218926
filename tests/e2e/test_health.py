"""The running bot's ``/healthz`` follows its Discord gateway connection; ``/metrics`` says the same."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.e2e.conftest import Encore
from tests.fakes.discord import DiscordSimulator
from tests.promparse import parse


async def get(base: str, path: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
        http.get(base + path) as response,
    ):
        body = await response.json() if path == "/healthz" else await response.text()
        return response.status, body


async def test_healthz_follows_the_gateway(encore: Encore, sim: DiscordSimulator) -> None:
    bot = await encore.start()
    assert bot.core.web is not None  # the bot serves health and metrics even when it only polls
    base = f"http://127.0.0.1:{bot.core.web.port}"

    status, body = await get(base, "/healthz")
    assert status == 200, body
    assert body["checks"] == {"database": body["checks"]["database"], "discord": {"ok": True}}
    assert body["checks"]["database"]["ok"] is True
    assert parse((await get(base, "/metrics"))[1]).value("encore_discord_gateway_up") == 1

    mark = len(sim.gateway.events)
    async with sim.gateway_outage():
        # The bot has noticed the drop once it connects again (the simulator holds it off meanwhile).
        await sim.gateway.events.wait(
            lambda event: event.kind == "connect", since=mark, timeout_s=10, looking_for="a reconnect"
        )
        status, body = await get(base, "/healthz")
        assert (status, body["status"], body["checks"]["discord"]) == (503, "degraded", {"ok": False})
        assert parse((await get(base, "/metrics"))[1]).value("encore_discord_gateway_up") == 0

    status, body = await get(base, "/healthz")
    assert (status, body["checks"]["discord"]) == (200, {"ok": True})
