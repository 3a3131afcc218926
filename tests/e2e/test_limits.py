"""Limits as people meet them in Discord: a private, clear refusal; /music usage; /music help."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Encore, card_field, default_guild
from tests.fakes.discord import DiscordSimulator
from tests.fakes.replicate import FakeReplicate


async def test_quota_refusal_is_private_and_usage_shows_it(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    encore.configure(limits={"user_daily_jobs": 1, "user_daily_audio_s": 100, "guild_daily_budget_usd": 2.0})
    await encore.start()
    bob = sim.user("bob")  # a plain member (alice owns the test guild)
    await (await bob.slash("music generate", prompt="one", duration=5)).wait_response()
    refused = await (await bob.slash("music generate", prompt="two")).wait_original()
    assert refused.is_ephemeral
    assert "You've made 1 of your 1 tracks today" in refused.content
    usage = await (await bob.slash("music usage")).wait_original()
    assert usage.is_ephemeral
    assert card_field(usage, "Tracks") == "1 of 1"
    assert card_field(usage, "Seconds") == "5 s of 100 s"
    assert card_field(usage, "Server budget") is None  # members don't see the server's money
    admin = await (await sim.user("boss").slash("music usage")).wait_original()
    assert card_field(admin, "Server tracks") == "1 (no limit)"
    assert (card_field(admin, "Server budget") or "").startswith("$0.01 of $2.00")
    assert len(fake.predictions) == 1


@pytest.mark.parametrize("guilds", [[default_guild()]])
async def test_help(encore: Encore, sim: DiscordSimulator) -> None:
    await encore.start()
    reply = await (await sim.user("alice").slash("music help")).wait_original()
    assert reply.is_ephemeral
    assert "/music generate" in reply.embeds[0]["description"]
