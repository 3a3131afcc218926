"""Delivery when Discord makes it hard: expired tokens, upload limits, permissions, restarts, reconnects."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from bot.records import JobStatus
from tests.e2e.conftest import Encore, accepted, card_status, default_guild, job_id_of, status_is
from tests.fakes.audio import audio_info, make_wav, wav_info
from tests.fakes.discord import DiscordSimulator
from tests.fakes.discord.models import DEFAULT_BOT_PERMISSIONS, Permission
from tests.fakes.replicate import FakeReplicate, OutputFile


@pytest.mark.both_backends  # a key job flow, on both storage backends
async def test_delivery_after_the_token_expired_replies_to_the_card(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    await encore.start()
    alice = sim.user("alice")
    handle = await alice.slash("music generate", prompt="very long queue", duration=4)
    card = await handle.wait_original()
    pid = await fake.wait_for_prediction()
    sim.clock.advance(16 * 60)  # a cold boot later: the interaction token is dead
    mark = sim.mark()
    await fake.succeed(pid)

    channel_id = card.channel_id
    delivery = await sim.wait_for_message(channel_id, lambda m: bool(m.attachments), since=mark)
    assert delivery.interaction_id is None  # a normal channel message, not through the token
    assert delivery.reply_to == card.id
    assert delivery.mentions == [alice.id]
    assert round(wav_info(delivery.attachments[0].data).duration_s) == 4
    assert delivery.nonce == f"encore-{job_id_of(card)}"
    done = await sim.wait_for_edit(card.id, status_is("Done"))
    assert f"encore:cancel:{job_id_of(card)}" not in done.custom_ids()
    assert f"encore:extend:{job_id_of(card)}" in done.custom_ids()


def _big_musicgen(fake: FakeReplicate) -> None:
    """MusicGen answering with an 11.5 MB WAV (60 s of 48 kHz stereo), over a tier-0 guild's 10 MiB."""
    model = fake.models["meta/musicgen"]

    def run(inp: dict[str, Any]) -> tuple[Any, str]:
        return OutputFile("out.wav", make_wav(60, sample_rate=48000, channels=2), "audio/wav"), "Using seed 7\n"

    fake.add_model(dataclasses.replace(model, run=run))


async def test_long_output_is_fitted_into_a_10_mib_guild(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    _big_musicgen(fake)  # an 11.5 MB WAV for a tier-0 guild (10 MiB)
    fake.auto_advance = True
    await encore.start()
    handle = await sim.user("alice").slash("music generate", prompt="too big for wav")
    audio = await handle.wait_file()
    assert audio.filename.endswith(".ogg")
    assert audio.size <= 10 * 1024 * 1024
    info = audio_info(audio.data)
    assert (info.codec, round(info.duration_s)) == ("opus", 60)  # the whole track, re-encoded
    delivery = next(m for m in handle.followups if m.attachments)
    assert "converted to Opus to fit the 10.0 MiB upload limit" in delivery.content
    await handle.wait_original(status_is("Done"))


@pytest.mark.parametrize("guilds", [[default_guild(premium_tier=2)]])
async def test_boosted_guild_takes_the_big_file(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    _big_musicgen(fake)
    fake.auto_advance = True
    await encore.start()
    handle = await sim.user("alice").slash("music generate", prompt="big but fine")
    audio = await handle.wait_file()
    assert audio.size > 10 * 1024 * 1024


async def test_missing_attach_files_tells_the_requester(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    channel = sim.channel("quiet")
    await sim.set_bot_permissions(channel.id, DEFAULT_BOT_PERMISSIONS & ~Permission.ATTACH_FILES)
    fake.auto_advance = True
    await encore.start()
    handle = await sim.user("alice").slash("music generate", channel_id=channel.id, prompt="no files here")
    failed = await handle.wait_original(status_is("Failed"))
    assert "permission to post files" in card_status(failed)
    assert "Attach Files" in card_status(failed)


@pytest.mark.both_backends  # a key job flow, on both storage backends
async def test_restart_mid_job_delivers_exactly_once(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    await encore.start()
    handle = await sim.user("alice").slash("music generate", prompt="survives restarts", duration=3)
    card = await handle.wait_original()
    pid = await fake.wait_for_prediction()
    await fake.begin(pid)
    await handle.wait_original(status_is("Generating"))
    await encore.stop()
    await fake.succeed(pid)  # finishes while the bot is down
    await encore.start()

    delivery = await sim.wait_for_message(card.channel_id, lambda m: bool(m.attachments))
    assert delivery.reply_to == card.id
    await sim.wait_for_edit(card.id, status_is("Done"))
    audio = [m for m in sim.messages if any(a.filename.endswith(".wav") for a in m.attachments) and not m.deleted]
    assert len(audio) == 1
    assert encore.bot is not None
    assert (await encore.bot.service.get(job_id_of(card))).status == JobStatus.DELIVERED


async def test_gateway_reconnect_mid_job(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    await encore.start()
    handle = await sim.user("alice").slash("music generate", prompt="through a reconnect", duration=2)
    pid = await fake.wait_for_prediction()
    await sim.drop_gateway(resume=True)
    await fake.succeed(pid)
    audio = await handle.wait_file()
    assert round(wav_info(audio.data).duration_s) == 2
    # and the bot still answers commands after resuming
    second = await sim.user("bob").slash("music generate", prompt="after the reconnect")
    await accepted(second)


async def test_discord_outage_on_upload_is_retried(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    # After the token expired, delivery is a channel message. discord.py raises on a 503 there at once
    # (it retries only 500/502/504 itself), so Encore's own retry from the stored file must carry it.
    route = "POST /channels/{channel_id}/messages"
    sim.inject_error(route, status=503, code=0, times=3)
    encore.configure(jobs={"retry_s": 0.01})
    await encore.start()
    handle = await sim.user("alice").slash("music generate", prompt="flaky discord", duration=2)
    card = await handle.wait_original()
    pid = await fake.wait_for_prediction()
    sim.clock.advance(16 * 60)
    await fake.succeed(pid)
    delivery = await sim.wait_for_message(card.channel_id, lambda m: bool(m.attachments))
    assert round(wav_info(delivery.attachments[0].data).duration_s) == 2
    attempts = sim.requests_to(route)
    assert [c.status for c in attempts] == [503, 503, 503, 200]  # the outage really happened
    assert len({c.body["nonce"] for c in attempts}) == 1  # every retry is the same message to Discord
    assert len([m for m in sim.messages if any(a.filename.endswith(".wav") for a in m.attachments)]) == 1


async def test_rate_limited_upload_is_retried_by_the_client(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    route = "POST /webhooks/{webhook_id}/{webhook_token}"
    sim.inject_rate_limit(route, times=2, retry_after_s=0.05)
    fake.auto_advance = True
    await encore.start()
    handle = await sim.user("alice").slash("music generate", prompt="rate limited", duration=2)
    audio = await handle.wait_file()
    assert round(wav_info(audio.data).duration_s) == 2
    assert [c.status for c in sim.requests_to(route)][:3] == [429, 429, 200]
