"""Encore as it ships: ``config.example.toml`` exactly as written, through Discord.

The rest of the suite configures Encore its own way (no limits, polls every 10 ms, commands synced to a test
server), which is how the shipped defaults once went untested. Here only what an operator points at their own
services changes, through the same ``ENCORE_<SECTION>__<KEY>`` variables an operator would set: the providers'
base URLs (the fakes), the web server's address and the data directory. So the limits are the real ones,
polls back off from 1 s to 15 s, cards are edited at most every 2 s and the commands are synced globally.
Nothing sleeps: each step awaits what the bot does, with timeouts that cover the default backoff.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.providers.elevenlabs_api import ElevenLabsSettings
from tests.e2e.conftest import Encore, accepted, card_field, card_status, job_id_of, status_is
from tests.fakes.discord import DiscordSimulator
from tests.fakes.elevenlabs import FakeElevenLabs
from tests.fakes.replicate import FakeReplicate

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"
POLLED_S = 45.0  # time enough for a few polls under the shipped backoff (1 s, 1.5 s, 2.25 s, ... up to 15 s)


@pytest.fixture
def shipped(encore: Encore, monkeypatch: pytest.MonkeyPatch) -> Encore:
    settings = encore.use_config_file(EXAMPLE, monkeypatch)
    assert settings.discord.dev_guild_ids == []
    assert settings.jobs.poll_initial_s == 1.0
    assert settings.limits.user_jobs_in_flight == 3
    return encore


async def test_generate_with_the_shipped_config(shipped: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    await shipped.start()
    assert [c.name for c in sim.commands_synced()]  # global commands, as shipped
    assert sim.commands_synced(sim.guild.id) == []
    handle = await sim.user("alice").slash("music generate", prompt="harbour at dawn", duration=5)
    card = await accepted(handle)
    assert card_field(card, "Duration") == "5 s"
    pid = await fake.wait_for_prediction()
    assert fake.prediction(pid).input["duration"] == 5
    await fake.succeed(pid)
    audio = await handle.wait_file(lambda a: a.filename.endswith(".wav"), timeout_s=POLLED_S)
    assert audio.filename == f"harbour-at-dawn-{job_id_of(card)}.wav"
    done = await handle.wait_original(status_is("Done"), timeout_s=POLLED_S)
    assert card_field(done, "Seed") is not None
    assert fake.count("GET", "/v1/predictions/") >= 1  # it learnt the outcome by polling, the shipped default

    await shipped.restart()  # same commands: Discord isn't asked to sync them again
    assert len(sim.requests_to("PUT /applications/{application_id}/commands")) == 1
    await accepted(await sim.user("bob").slash("music generate", prompt="after a restart", duration=5))


async def test_the_shipped_limits_through_discord(shipped: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    await shipped.start()
    bob = sim.user("bob")
    for n in range(3):
        await accepted(await bob.slash("music generate", prompt=f"take {n}", duration=5))
    refused = await (await bob.slash("music generate", prompt="one too many", duration=5)).wait_message()
    assert refused.is_ephemeral
    assert "request(s) in progress" in refused.content  # [limits] user_jobs_in_flight = 3

    usage = await (await bob.slash("music usage")).wait_original()
    assert usage.is_ephemeral
    assert card_field(usage, "Tracks") == "3 of 50"
    assert card_field(usage, "Seconds") == "15 s of 1800 s"
    assert card_field(usage, "In progress") == "3 of 3"
    admin = await (await sim.user("boss").slash("music usage")).wait_original()
    assert card_field(admin, "Server tracks") == "3 of 500"
    assert (card_field(admin, "Server budget") or "").endswith("of $5.00")
    assert len(fake.predictions) == 3


async def test_cancel_with_the_shipped_config(shipped: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    await shipped.start()
    alice = sim.user("alice")
    handle = await alice.slash("music generate", prompt="never mind", duration=5)
    card = await accepted(handle)
    pid = await fake.wait_for_prediction()
    reply = await (await alice.slash("music cancel")).wait_original()
    assert reply.is_ephemeral
    assert f"Canceled job `{job_id_of(card)}`" in reply.content
    assert "Canceled" in card_status(await handle.wait_original(status_is("Canceled"), timeout_s=POLLED_S))
    assert fake.prediction(pid).status == "canceled"
    usage = await (await alice.slash("music usage")).wait_original()
    assert card_field(usage, "Tracks") == "0 of 50"  # a canceled job gives its share back


async def test_song_with_the_shipped_config(eleven: FakeElevenLabs, shipped: Encore, sim: DiscordSimulator) -> None:
    assert shipped.config_path == EXAMPLE  # still the shipped file, with ElevenLabs pointed at the fake
    elevenlabs = shipped.settings.section("elevenlabs", ElevenLabsSettings)
    assert str(elevenlabs.api_base).rstrip("/") == eleven.base_url.rstrip("/")
    await shipped.start()
    handle = await sim.user("alice").slash("music song", prompt="a shanty about shipping on time", length=10)
    await accepted(handle)
    audio = await handle.wait_file(timeout_s=POLLED_S)
    assert audio.filename.endswith(".mp3")  # [elevenlabs] output_format = "mp3_44100_128"
    [generation] = eleven.generations
    assert (generation.music_length_ms, generation.model_id) == (10_000, "music_v1")
    await handle.wait_original(status_is("Done"), timeout_s=POLLED_S)
