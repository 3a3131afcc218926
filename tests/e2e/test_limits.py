"""Limits as people meet them in Discord: a private, clear refusal; /music usage; /music help."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.e2e.conftest import Encore, accepted, card_field, default_guild, job_id_of, status_is
from tests.fakes.discord import DiscordSimulator
from tests.fakes.replicate import FakeReplicate

# The job flows run on both storage backends (tests/conftest.py).
pytestmark = pytest.mark.both_backends


async def test_quota_refusal_is_private_and_usage_shows_it(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    encore.configure(limits={"user_daily_jobs": 1, "user_daily_audio_s": 100, "guild_daily_budget_usd": 2.0})
    await encore.start()
    bob = sim.user("bob")  # a plain member (alice owns the test guild)
    await accepted(await bob.slash("music generate", prompt="one", duration=5))
    refused = await (await bob.slash("music generate", prompt="two")).wait_message()
    assert refused.is_ephemeral
    assert "You've made 1 of your 1 tracks today" in refused.content
    assert "More <t:" in refused.content  # Discord shows when it resets in the reader's own time
    usage = await (await bob.slash("music usage")).wait_original()
    assert usage.is_ephemeral
    assert card_field(usage, "Tracks") == "1 of 1"
    assert card_field(usage, "Seconds") == "5 s of 100 s"
    assert card_field(usage, "Server budget") is None  # members don't see the server's money
    admin = await (await sim.user("boss").slash("music usage")).wait_original()
    assert card_field(admin, "Server tracks") == "1 (no limit)"
    assert (card_field(admin, "Server budget") or "").startswith("$0.01 of $2.00")
    assert len(fake.predictions) == 1


async def test_a_quota_refusal_from_a_button_shows_when_it_resets_live(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    encore.configure(limits={"user_daily_jobs": 1})
    await encore.start()
    bob = sim.user("bob")
    handle = await bob.slash("music generate", prompt="one", duration=2)
    await fake.succeed(await fake.wait_for_prediction())
    done = await handle.wait_original(status_is("Done"))
    refused = await (await bob.click(done, f"encore:regen:{job_id_of(done)}")).wait_message()
    assert refused.is_ephemeral
    assert "More <t:" in refused.content  # not a plain UTC time: Discord shows it in the reader's own zone
    assert len(fake.predictions) == 1


@pytest.mark.parametrize("guilds", [[default_guild()]])
async def test_help(encore: Encore, sim: DiscordSimulator) -> None:
    await encore.start()
    reply = await (await sim.user("alice").slash("music help")).wait_original()
    assert reply.is_ephemeral
    assert "/music generate" in reply.embeds[0]["description"]


@pytest.mark.parametrize(
    ("sections", "first", "second", "message"),
    [
        ({"limits": {"user_cooldown_s": 3600}}, {}, {}, "Please wait"),
        ({"limits": {"user_daily_audio_s": 10}}, {"duration": 8}, {"duration": 8}, "more music than you have left"),
        ({"limits": {"user_jobs_in_flight": 1}}, {}, {}, "request(s) in progress"),
        ({"limits": {"guild_daily_budget_usd": 0.02}}, {"duration": 8}, {"duration": 8}, "budget for today is spent"),
        ({"limits": {"daily_budget_usd": 0.02}}, {"duration": 8}, {"duration": 8}, "Encore's budget for today"),
        ({"limits": {"guild_daily_jobs": 1}}, {}, {}, "This server has made its 1 tracks"),
        ({"safety": {"blocked_patterns": [r"\bnope\b"]}}, None, {"prompt": "nope nope"}, "isn't allowed here"),
        (
            {"safety": {"refuse_artist_names": True, "artist_names": ["Big Star"]}},
            None,
            {"prompt": "like big star"},
            "instead of naming an artist",
        ),
    ],
)
async def test_each_rule_through_discord(
    encore: Encore,
    sim: DiscordSimulator,
    fake: FakeReplicate,
    sections: dict[str, dict[str, Any]],
    first: dict[str, object] | None,
    second: dict[str, object],
    message: str,
) -> None:
    encore.configure(limits=sections.get("limits", {}), safety=sections.get("safety", {}))
    await encore.start()
    bob = sim.user("bob")
    if first is not None:
        ok = await bob.slash("music generate", options={"prompt": "first", **first})  # type: ignore[dict-item]
        await accepted(ok)
    refused = await (
        await bob.slash("music generate", options={"prompt": "second", **second})  # type: ignore[dict-item]
    ).wait_message()
    assert refused.is_ephemeral
    assert message in refused.content


async def test_dms_can_be_turned_off(encore: Encore, sim: DiscordSimulator) -> None:
    encore.configure(discord={"dev_guild_ids": []}, safety={"allow_dms": False})
    await encore.start()
    reply = await (await sim.user("bob").slash("music generate", dm=True, prompt="x")).wait_message()
    assert "isn't available in direct messages" in reply.content


async def test_two_members_racing_for_the_servers_last_track(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    encore.configure(limits={"guild_daily_jobs": 1})
    await encore.start()
    bob, mod = sim.user("bob"), sim.user("mod")
    first, second = await asyncio.gather(
        bob.slash("music generate", prompt="mine"), mod.slash("music generate", prompt="no, mine")
    )
    answers = [await first.wait_message(), await second.wait_message()]
    cards = [a for a in answers if a.embeds]
    refusals = [a for a in answers if not a.embeds]
    assert len(cards) == 1
    assert len(refusals) == 1
    assert "This server has made its 1 tracks" in refusals[0].content
    await fake.wait_for_prediction()
    assert len(fake.predictions) == 1
