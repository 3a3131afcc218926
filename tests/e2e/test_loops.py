"""Make it loop, and ``/music generate loop:``, through the Discord simulator.

The fake MusicGen makes a steady tone: no beat to find, so these loops are cut to bars at 120 BPM (two seconds a
bar); the tempo and the seam are tested on real beats in ``tests/unit/audio/test_loop.py``. Two servers: "home",
where alice makes her tracks (bob is a member; "staff" is a channel only its moderators see), and "away", where
eve is and home is not.
"""

from __future__ import annotations

import asyncio
import struct
import time
from pathlib import Path

import pytest

from bot.jobs.retention import DAY_S, Janitor
from bot.records import JobStatus
from tests.e2e.conftest import Encore, card_status, default_guild, job_id_of, status_is
from tests.fakes.audio import audio_info
from tests.fakes.beats import click_track, wav_bytes
from tests.fakes.discord import DiscordSimulator, SimUser
from tests.fakes.discord.models import ChannelConfig, GuildConfig, MemberConfig, Permission, SimMessage
from tests.fakes.replicate import FakeReplicate
from tests.integration.test_retention import age

ALICE = 4_200_000_000_000_000_001


@pytest.fixture
def guilds() -> list[GuildConfig]:
    view = int(Permission.VIEW_CHANNEL)
    home = default_guild(
        name="home",
        channels=[
            ChannelConfig("general"),
            ChannelConfig("staff", overwrites={"@everyone": (0, view), "Moderators": (view, 0)}),
        ],
        members=[
            MemberConfig("alice", id=ALICE),
            MemberConfig("bob"),
            MemberConfig("mod", roles=["Moderators"]),
        ],
    )
    away = GuildConfig(
        name="away", channels=[ChannelConfig("lobby")], members=[MemberConfig("eve"), MemberConfig("alice", id=ALICE)]
    )
    return [home, away]


@pytest.fixture(autouse=True)
def _auto(fake: FakeReplicate) -> None:
    fake.auto_advance = True


def is_loop(message: SimMessage) -> bool:
    return any("_loop_" in a.filename for a in message.attachments)


def loops_in(sim: DiscordSimulator, channel_id: int) -> list[SimMessage]:
    """The loops everyone in the channel sees."""
    return [
        m
        for m in sim.messages
        if m.channel_id == channel_id and is_loop(m) and not m.is_ephemeral and not m.deleted and not m.is_loading
    ]


def loop_points(data: bytes) -> tuple[int, int]:
    """The first and last frame of the loop in a WAV's ``smpl`` chunk."""
    position = 12
    while position + 8 <= len(data):
        chunk_id, length = struct.unpack("<4sI", data[position : position + 8])
        if chunk_id == b"smpl":
            start, end = struct.unpack("<2I", data[position + 8 + 44 : position + 8 + 52])
            return start, end
        position += 8 + length + (length & 1)
    raise AssertionError("no smpl chunk")


async def track(user: SimUser, prompt: str, duration: int, *, channel_id: int | None = None) -> SimMessage:
    """A finished track's card (Done)."""
    handle = await user.slash("music generate", channel_id=channel_id, prompt=prompt, duration=duration)
    await handle.wait_file()
    return await handle.wait_original(status_is("Done"))


async def click_loop(user: SimUser, card: SimMessage) -> SimMessage:
    handle = await user.click(card, f"encore:loop:{job_id_of(card)}")
    return await handle.wait_message()


async def test_make_it_loop_posts_a_loop_of_the_track_after_a_restart(encore: Encore, sim: DiscordSimulator) -> None:
    await encore.start()
    card = await track(sim.user("alice"), "warm lofi", 10)
    job_id = job_id_of(card)
    await encore.restart()  # the button outlives the process that drew it

    posted = await click_loop(sim.user("bob"), card)  # anyone who can see the channel
    assert not posted.is_ephemeral
    [loop] = posted.attachments
    assert loop.filename == f"warm-lofi-{job_id}_loop_8s.wav"
    assert f"A loop of `{job_id}`: 8.0 s (no steady beat found" in posted.content
    info = audio_info(loop.data)
    assert info.duration_s == pytest.approx(8.0, abs=0.01)
    assert info.codec == "pcm_s16le"  # as made, never re-encoded
    assert loop_points(loop.data) == (0, info.frames - 1)

    # The same loop again is the one already posted, not a second one.
    again = await click_loop(sim.user("alice"), card)
    assert again.is_ephemeral
    assert f"/{posted.channel_id}/{posted.id}" in again.content
    assert [m.id for m in loops_in(sim, card.channel_id)] == [posted.id]


async def test_a_double_click_makes_one_loop(encore: Encore, sim: DiscordSimulator) -> None:
    await encore.start()
    card = await track(sim.user("alice"), "double tap", 6)
    bob = sim.user("bob")
    first, second = await asyncio.gather(
        bob.click(card, f"encore:loop:{job_id_of(card)}"), bob.click(card, f"encore:loop:{job_id_of(card)}")
    )
    answers = [await first.wait_message(), await second.wait_message()]
    made = [m for m in answers if not m.is_ephemeral]
    told = [m for m in answers if m.is_ephemeral]
    assert len(made) == 1
    assert len(told) == 1
    assert "being made" in told[0].content or "already here" in told[0].content
    assert [m.id for m in loops_in(sim, card.channel_id)] == [made[0].id]
    assert "_loop_4s.wav" in made[0].attachments[0].filename  # 4 bars don't fit in 6 s: 2 bars


async def test_the_loop_option_posts_the_loop_with_the_track(encore: Encore, sim: DiscordSimulator) -> None:
    await encore.start()
    handle = await sim.user("alice").slash("music generate", prompt="drum loop", duration=10, loop=2)
    delivered = await handle.wait_message(lambda m: any(a.filename.endswith(".wav") for a in m.attachments))
    card = await handle.wait_original(status_is("Done"))
    job_id = job_id_of(card)
    loop = await sim.wait_for_message(card.channel_id, is_loop)
    assert loop.reply_to == delivered.id
    assert loop.attachments[0].filename == f"drum-loop-{job_id}_loop_4s.wav"
    assert audio_info(loop.attachments[0].data).duration_s == pytest.approx(4.0, abs=0.01)
    # The button makes the loop the track was asked with: the one already posted.
    again = await click_loop(sim.user("bob"), card)
    assert again.is_ephemeral
    assert f"/{loop.id}" in again.content
    assert len(loops_in(sim, card.channel_id)) == 1


async def test_no_loop_of_a_job_into_another_server(encore: Encore, sim: DiscordSimulator) -> None:
    await encore.start()
    card = await track(sim.user("alice"), "home secret", 6)
    job_id = job_id_of(card)
    lobby = sim.channel("lobby", guild_id=sim.guilds[1].id)
    shown = await (await sim.user("alice", guild_id=sim.guilds[1].id).slash("music show", job=job_id)).wait_original()
    refused = await click_loop(sim.user("eve", guild_id=sim.guilds[1].id), shown)
    assert refused.is_ephemeral
    assert "Only the person who asked for this track can make a loop of it outside the server" in refused.content
    assert loops_in(sim, lobby.id) == []
    # Its requester may, wherever she is.
    mine = await click_loop(sim.user("alice", guild_id=sim.guilds[1].id), shown)
    assert is_loop(mine)
    assert [m.id for m in loops_in(sim, lobby.id)] == [mine.id]


async def test_no_loop_of_a_track_from_a_channel_you_cant_see(encore: Encore, sim: DiscordSimulator) -> None:
    await encore.start()
    staff = sim.channel("staff")
    private = await track(sim.user("mod"), "staff secret", 6, channel_id=staff.id)
    job_id = job_id_of(private)
    shown = await (await sim.user("mod").slash("music show", job=job_id)).wait_original()  # in general
    refused = await click_loop(sim.user("bob"), shown)
    assert refused.is_ephemeral
    assert "channel you can't see" in refused.content
    assert loops_in(sim, shown.channel_id) == []


async def test_a_track_no_longer_kept_is_not_looped(encore: Encore, sim: DiscordSimulator) -> None:
    encore.configure(storage={"keep_files_days": 30})
    bot = await encore.start()
    card = await track(sim.user("alice"), "old tape", 6)
    kept = await bot.service.get(job_id_of(card))
    assert kept.output_path is not None
    # The retention clean-up, 31 days on, deletes the track's audio.
    age(Path(kept.output_path), 31)
    swept = await Janitor(bot.core.repo, bot.settings.storage, clock=lambda: time.time() + 31 * DAY_S).sweep()
    assert swept.files >= 1
    assert not Path(kept.output_path).exists()
    refused = await click_loop(sim.user("alice"), card)
    assert refused.is_ephemeral
    assert refused.content == "That track's audio is no longer kept, so I can't make a loop of it."
    assert loops_in(sim, card.channel_id) == []


async def test_a_too_short_track_is_refused_clearly(encore: Encore, sim: DiscordSimulator) -> None:
    await encore.start()
    card = await track(sim.user("alice"), "blip", 1)
    refused = await click_loop(sim.user("alice"), card)
    assert refused.is_ephemeral
    assert refused.content == "That track is only 1.0 s long: a loop needs at least 2 s of audio."
    assert "Done" in card_status(sim.message(card.id))


async def test_loops_per_hour_are_limited(encore: Encore, sim: DiscordSimulator) -> None:
    encore.configure(limits={"user_loops_per_hour": 1})
    await encore.start()
    alice = sim.user("alice")
    first, second = await track(alice, "one", 4), await track(alice, "two", 4)
    assert is_loop(await click_loop(alice, first))
    refused = await click_loop(alice, second)
    assert refused.is_ephemeral
    assert "You've asked for 1 loop in the last hour" in refused.content
    assert len(loops_in(sim, first.channel_id)) == 1


async def test_a_redelivery_after_a_crash_posts_the_loop_once(encore: Encore, sim: DiscordSimulator) -> None:
    """The bot stopped after posting the track and its loop but before recording the delivery: the next start
    delivers the job again, and finds both already posted."""
    bot = await encore.start()
    handle = await sim.user("alice").slash("music generate", prompt="drum loop", duration=10, loop=2)
    card = await handle.wait_original(status_is("Done"))
    job_id = job_id_of(card)
    loop = await sim.wait_for_message(card.channel_id, is_loop)
    await bot.core.db.write("UPDATE jobs SET status = 'succeeded', delivered_at = NULL WHERE id = ?", (job_id,))
    mark = sim.mark()
    bot = await encore.restart()
    # The restart's reconcile delivers it again: it finds the track posted, records the delivery, and the card
    # is drawn once more.
    await sim.wait_for_request(
        "PATCH /channels/{channel_id}/messages/{message_id}",
        lambda call: call.params.get("message_id") == str(card.id),
        since=mark,
    )
    assert (await bot.service.get(job_id)).status == JobStatus.DELIVERED
    assert [m.id for m in loops_in(sim, card.channel_id)] == [loop.id]


async def test_a_loop_deleted_since_is_made_again_and_delete_takes_the_loops(
    encore: Encore, sim: DiscordSimulator
) -> None:
    await encore.start()
    card = await track(sim.user("alice"), "tape loop", 6)
    first = await click_loop(sim.user("bob"), card)
    await sim.user("mod").delete_message(first)  # a moderator took it down
    again = await click_loop(sim.user("bob"), card)
    assert is_loop(again)
    assert again.id != first.id
    assert [m.id for m in loops_in(sim, card.channel_id)] == [again.id]
    # Delete takes the track's loops in its channel with it.
    deleted = await sim.user("alice").click(card, f"encore:delete:{job_id_of(card)}")
    await deleted.wait_message(lambda m: "Deleted" in m.content)
    await sim.wait_for_delete(again.id)
    assert loops_in(sim, card.channel_id) == []


async def test_a_track_with_a_beat_loops_on_it(encore: Encore, sim: DiscordSimulator) -> None:
    """The fake MusicGen makes tones, so the track Encore keeps is swapped for a drum machine at 124 BPM (what a
    real model makes of "lofi drums"): the loop is named with its tempo and bars and states them to a DAW."""
    bot = await encore.start()
    card = await track(sim.user("alice"), "lofi drums", 20)
    kept = await bot.service.get(job_id_of(card))
    assert kept.output_path is not None
    Path(kept.output_path).write_bytes(wav_bytes(click_track(124, 20, rate=32000), 32000))
    posted = await click_loop(sim.user("alice"), card)
    [loop] = posted.attachments
    assert loop.filename == f"lofi-drums-{job_id_of(card)}_loop_124bpm_4bars.wav"
    assert "4 bars at 124.0 BPM (7.7 s)" in posted.content
    assert "DAWs its tempo" in posted.content
    assert audio_info(loop.data).duration_s == pytest.approx(16 * 60 / 124, abs=0.01)
