"""The running bot's ``/healthz`` follows its Discord gateway shards, each on its own; ``/metrics`` says the same."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import Encore, default_guild
from tests.fakes.discord import DiscordSimulator
from tests.fakes.discord.sharding import guild_id_on_shard
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
    assert set(body["checks"]) == {"database", "discord"}
    assert body["checks"]["database"]["ok"] is True
    # one server: Discord recommends one shard, and that is what the bot connected
    assert body["checks"]["discord"]["ok"] is True
    assert list(body["checks"]["discord"]["shards"]) == ["0"]
    assert body["checks"]["discord"]["shards"]["0"]["ok"] is True
    assert parse((await get(base, "/metrics"))[1]).value("encore_discord_gateway_up") == 1

    mark = len(sim.gateway.events)
    async with sim.gateway_outage():
        # The bot has noticed the drop once it connects again (the simulator holds it off meanwhile).
        await sim.gateway.events.wait(
            lambda event: event.kind == "connect", since=mark, timeout_s=10, looking_for="a reconnect"
        )
        status, body = await get(base, "/healthz")
        assert (status, body["status"]) == (503, "degraded")
        assert body["checks"]["discord"] == {"ok": False, "shards": {"0": {"ok": False}}}
        assert parse((await get(base, "/metrics"))[1]).value("encore_discord_gateway_up") == 0

    status, body = await get(base, "/healthz")
    assert (status, body["checks"]["discord"]["ok"]) == (200, True)


@pytest.mark.parametrize(
    "guilds",
    [[default_guild(id=guild_id_on_shard(0, 2, 0)), default_guild(name="Other", id=guild_id_on_shard(1, 2, 1))]],
)
async def test_healthz_reports_each_shard(encore: Encore, sim: DiscordSimulator) -> None:
    encore.configure(discord={"shard_count": 2})
    sim.gateway.max_concurrency = 2  # both shards may identify at once
    bot = await encore.start()
    assert bot.core.web is not None
    base = f"http://127.0.0.1:{bot.core.web.port}"
    status, body = await get(base, "/healthz")
    assert status == 200, body
    assert {k: v["ok"] for k, v in body["checks"]["discord"]["shards"].items()} == {"0": True, "1": True}
    assert all(v["latency_ms"] >= 0 for v in body["checks"]["discord"]["shards"].values())  # heartbeats answered

    mark = len(sim.gateway.events)
    async with sim.gateway_outage(shard_id=1):
        await sim.gateway.events.wait(
            lambda event: event.kind == "connect", since=mark, timeout_s=10, looking_for="shard 1 reconnecting"
        )
        status, body = await get(base, "/healthz")
        assert (status, body["status"]) == (503, "degraded")
        shards = body["checks"]["discord"]["shards"]
        assert (body["checks"]["discord"]["ok"], shards["0"]["ok"], shards["1"]) == (False, True, {"ok": False})
        metrics = parse((await get(base, "/metrics"))[1])
        assert metrics.value("encore_discord_gateway_up") == 0
        assert metrics.value("encore_discord_shard_up", shard="0") == 1
        assert metrics.value("encore_discord_shard_up", shard="1") == 0

    status, body = await get(base, "/healthz")
    assert (status, body["checks"]["discord"]["ok"]) == (200, True)
    assert parse((await get(base, "/metrics"))[1]).value("encore_discord_shard_up", shard="1") == 1
