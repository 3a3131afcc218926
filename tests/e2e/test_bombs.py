"""Hostile input costs little and goes nowhere, through Discord.

A request that would be refused anyway downloads nothing (the simulator's CDN counts every request), on every
way a clip reaches Encore; a bomb is refused with a clear message; attachments come only from Discord's CDN,
follow no redirect and are cut off at the size limit while streaming; a melody's ``continuation_start`` is
checked against the real clip.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.e2e.conftest import Encore, status_is
from tests.fakes.audio import audio_info, make_wav
from tests.fakes.bombs import flac_bomb
from tests.fakes.discord import DiscordSimulator, SimFile
from tests.fakes.discord.models import SimMessage
from tests.fakes.discord.users import SimUser
from tests.fakes.elevenlabs import FakeElevenLabs
from tests.fakes.hostile import Endless, Servers
from tests.fakes.replicate import FakeReplicate

CLIP = SimFile("hum.wav", make_wav(3, sample_rate=16000, channels=1), "audio/wav")  # 96 KB


@pytest.fixture(autouse=True)
def _auto(fake: FakeReplicate) -> None:
    fake.auto_advance = True


async def modal(user: SimUser, menu: str, message: SimMessage, values: dict[str, str]) -> SimMessage:
    opened = await user.message_command(menu, message)
    await opened.wait_modal()
    return await (await user.submit_modal(opened, values)).wait_original()


async def every_way(sim: DiscordSimulator, user: SimUser, clip: SimFile = CLIP) -> list[SimMessage]:
    """Hand Encore a clip in each of the six ways there are; what it answered each time."""
    answers = [
        await (await user.slash("music melody", audio=clip, prompt="strings")).wait_original(),
        await (await user.slash("music stems", audio=clip)).wait_original(),
    ]
    posted = await user.send_message("my clip", files=[clip])
    answers.append(await modal(user, "Continue this track", posted, {"Seconds to add (1-20)": "5"}))
    answers.append(await modal(user, "Use as melody", posted, {"Prompt": "strings", "Length in seconds": "6"}))
    answers.append(await (await user.message_command("Split stems", posted)).wait_original())
    mark = sim.mark()
    reply = await user.send_message("keep going", files=[clip], reply_to=posted, mention_bot=True)
    card = await sim.wait_for_message(reply.channel_id, lambda m: m.reply_to == reply.id, since=mark)
    answers.append(await sim.wait_for_edit(card.id, lambda m: bool(m.content)))
    return answers


def assert_refused_unseen(sim: DiscordSimulator, fake: FakeReplicate, answers: list[SimMessage], text: str) -> None:
    assert [text in answer.content for answer in answers] == [True] * 6, [a.content for a in answers]
    assert all(answer.is_ephemeral for answer in answers[:5])  # the reply's card says it in the channel
    assert sim.cdn.requests == 0  # not one of the six clips was downloaded
    assert fake.predictions == {}


async def test_paused_refuses_every_way_without_downloading(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate, eleven: FakeElevenLabs
) -> None:
    await encore.start()
    assert "Paused" in (await (await sim.user("alice").slash("encore pause")).wait_original()).content
    answers = await every_way(sim, sim.user("bob"))
    assert_refused_unseen(sim, fake, answers, "paused by its operator")


async def test_a_refused_channel_refuses_every_way_without_downloading(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate, eleven: FakeElevenLabs
) -> None:
    await encore.start()
    boss = sim.user("boss")
    card = await (await boss.slash("musicadmin settings")).wait_original()
    picked = await boss.select(card, f"encore:admin:{sim.guild.id}", ["channels"])
    form = await picked.wait_modal()
    field = form["components"][0]
    inner = field.get("component") or field["components"][0]
    quiet = sim.channel("quiet")
    await (await boss.submit_modal(picked, {inner["custom_id"]: f"<#{quiet.id}>"})).wait_original()
    answers = await every_way(sim, sim.user("bob"))  # in #general
    assert_refused_unseen(sim, fake, answers, "isn't used in this channel")


async def test_an_exhausted_quota_refuses_every_way_without_downloading(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate, eleven: FakeElevenLabs
) -> None:
    encore.configure(limits={"user_daily_jobs": 1})
    await encore.start()
    bob = sim.user("bob")
    await (await bob.slash("music generate", prompt="my one track", duration=2)).wait_file()
    fake.predictions.clear()
    answers = await every_way(sim, bob)
    assert_refused_unseen(sim, fake, answers, "You've made 1 of your 1 tracks today")


async def test_a_bomb_is_refused_clearly(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    """2.2 MiB of FLAC that claims one second and decodes to 341 hours."""
    await encore.start()
    alice = sim.user("alice")
    bomb = SimFile("song.flac", flac_bomb(150_000), "audio/flac")
    handle = await alice.slash("music melody", audio=bomb, prompt="strings")
    refused = await handle.wait_message(lambda m: "too long" in m.content)
    assert refused.content == "That audio is too long: the limit is 300 s."
    posted = await alice.send_message("my song", files=[bomb])
    continued = await alice.message_command("Continue this track", posted)
    await continued.wait_modal()
    submitted = await alice.submit_modal(continued, {"Seconds to add (1-20)": "5"})
    assert (await submitted.wait_message(lambda m: "too long" in m.content)).content == refused.content
    assert fake.predictions == {}
    inputs = encore.settings.storage.inputs_dir
    assert not inputs.exists() or list(inputs.iterdir()) == []  # nothing kept of it


async def test_melody_continuation_start_is_checked_against_the_real_clip(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    await encore.start()
    alice = sim.user("alice")
    six = SimFile("six.wav", make_wav(6, sample_rate=32000, channels=2), "audio/wav")
    options = {"options": "continuation=true continuation_start=1"}
    handle = await alice.slash("music melody", audio=six, prompt="more", options=options)
    audio = await handle.wait_file()
    assert round(audio_info(audio.data).duration_s) == 8  # the default duration, which includes the clip
    [prediction] = fake.predictions.values()
    assert prediction.input["continuation"] is True
    assert prediction.input["continuation_start"] == 1
    await handle.wait_original(status_is("Done"))
    options = {"options": "continuation=true continuation_start=7"}
    past = await alice.slash("music melody", audio=six, prompt="more", options=options)
    refused = await past.wait_message(lambda m: "past the end" in m.content)
    assert refused.content == "`continuation_start` is past the end of the clip."
    assert len(fake.predictions) == 1


# -- where attachments come from -------------------------------------------------------------------


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    async with Servers() as started:
        yield started


async def test_attachments_only_from_the_cdn(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate, servers: Servers
) -> None:
    """The same CDN on another port of the same host is not Discord's CDN: nothing is fetched from it."""
    await encore.start()
    sim.cdn.base_url = await servers.start(sim.cdn.handle)  # attachment URLs now point there
    handle = await sim.user("alice").slash("music melody", audio=CLIP, prompt="strings")
    refused = await handle.wait_original()
    assert refused.content == "That file isn't on Discord's CDN, so I won't download it."
    assert sim.cdn.requests == 0
    assert fake.predictions == {}


async def test_no_redirect_is_followed_off_the_cdn(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate, servers: Servers
) -> None:
    await encore.start()
    elsewhere: list[str] = []

    async def target(request: web.Request) -> web.Response:
        elsewhere.append(request.path)
        return web.Response(body=CLIP.data, content_type="audio/wav")

    target_url = await servers.start(target)

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"{target_url}/hum.wav")

    sim.cdn.answer_with(CLIP.filename, redirect)
    handle = await sim.user("alice").slash("music melody", audio=CLIP, prompt="strings")
    refused = await handle.wait_message(lambda m: "couldn't download" in m.content)
    assert refused.content == "I couldn't download that file from Discord. Please try again."
    assert sim.cdn.requests == 1
    assert elsewhere == []
    assert fake.predictions == {}


async def test_an_oversize_body_is_cut_off_while_streaming(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    """The attachment says 96 KB; the CDN sends an endless body with no Content-Length."""
    encore.configure(audio={"max_input_bytes": 200_000})
    await encore.start()
    endless = Endless(CLIP.data[:65536], content_type="audio/wav")
    sim.cdn.answer_with(CLIP.filename, endless)
    handle = await sim.user("alice").slash("music melody", audio=CLIP, prompt="strings")
    refused = await handle.wait_message(lambda m: "larger than" in m.content)
    assert refused.content == "That file is larger than the limit of 195 KiB."
    assert await endless.hung_up() < 32 * 1024 * 1024  # what the sockets' buffers took; all of it is 256 MiB
    assert fake.predictions == {}


async def test_one_file_at_a_time_each(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate, eleven: FakeElevenLabs
) -> None:
    """While someone's file is still being fetched and read, their next one is turned away; others go on."""
    await encore.start()
    held = asyncio.Event()
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        held.set()
        await release.wait()
        return web.Response(body=CLIP.data, content_type="audio/wav")

    slow_clip = SimFile("slow.wav", CLIP.data, "audio/wav")
    sim.cdn.answer_with(slow_clip.filename, slow)
    alice, bob = sim.user("alice"), sim.user("bob")
    first = await alice.slash("music melody", audio=slow_clip, prompt="strings")
    async with asyncio.timeout(10):
        await held.wait()
    second = await (await alice.slash("music stems", audio=CLIP)).wait_original()
    assert second.content == "I'm still reading your last file. Please wait until it's done, then try again."
    assert second.is_ephemeral
    other = await bob.slash("music stems", audio=CLIP)
    stems = await other.wait_message(lambda m: len(m.attachments) == 6)  # bob's file went ahead
    assert {a.filename.rsplit("-", 1)[-1] for a in stems.attachments} >= {"vocals.mp3"} or stems.attachments
    release.set()
    await first.wait_file()
