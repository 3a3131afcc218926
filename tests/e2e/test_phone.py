"""Play on phone: a finished track posted again as a voice message, which Discord's phone apps play inline.

Two servers: "home", where alice makes her tracks (bob is a member; "staff" is a channel only moderators see),
and "away", where eve is (not in home at all) and alice and bob are too. What a phone shows is the simulator's
``on_phone``: an ordinary audio attachment is a file to download there, a voice message of Opus in Ogg plays
inline with its waveform.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest

from tests.e2e.conftest import Encore, default_guild, job_id_of, status_is
from tests.fakes.audio import audio_info
from tests.fakes.discord import (
    DEFAULT_BOT_PERMISSIONS,
    IS_VOICE_MESSAGE,
    DiscordSimulator,
    InteractionHandle,
    SimUser,
    on_phone,
)
from tests.fakes.discord.models import ChannelConfig, GuildConfig, MemberConfig, Permission, SimMessage
from tests.fakes.discord.users import OptionValue
from tests.fakes.discord.validation import message_rules, validate_request
from tests.fakes.replicate import FakeReplicate

ALICE, BOB = 4_200_000_000_000_000_001, 4_200_000_000_000_000_002
CREATE = "POST /channels/{channel_id}/messages"
FILENAME = "voice-message.ogg"  # what Discord's own clients call a voice message's file


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
            MemberConfig("bob", id=BOB),
            MemberConfig("mod", roles=["Moderators"]),
            MemberConfig("boss", roles=["Admins"]),
        ],
    )
    away = GuildConfig(
        name="away",
        channels=[ChannelConfig("lobby")],
        members=[MemberConfig("eve"), MemberConfig("alice", id=ALICE), MemberConfig("bob", id=BOB)],
    )
    return [home, away]


@pytest.fixture(autouse=True)
def _auto(fake: FakeReplicate) -> None:
    fake.auto_advance = True


def away(sim: DiscordSimulator, name: str) -> SimUser:
    return sim.user(name, guild_id=sim.guilds[1].id)


def is_voice(message: SimMessage) -> bool:
    return bool(message.flags & IS_VOICE_MESSAGE) and not message.deleted


def voice_messages(sim: DiscordSimulator) -> list[SimMessage]:
    return [m for m in sim.messages if is_voice(m)]


async def finished(
    sim: DiscordSimulator, user: SimUser, prompt: str = "pocket tune", **options: OptionValue
) -> tuple[SimMessage, SimMessage]:
    """A finished track: its Done card and the message that delivered its audio."""
    handle = await user.slash("music generate", options={"prompt": prompt, "duration": 3, **options})
    delivery = await handle.wait_followup(lambda m: any(a.content_type.startswith("audio/") for a in m.attachments))
    card = await handle.wait_original(status_is("Done"))
    return card, delivery


async def play_on_phone(user: SimUser, card: SimMessage) -> InteractionHandle:
    return await user.click(card, f"encore:phone:{job_id_of(card)}")


async def answer(handle: InteractionHandle) -> SimMessage:
    """The private answer to a click."""
    reply = await handle.wait_message(lambda m: bool(m.content))
    assert reply.is_ephemeral, reply.content
    return reply


async def test_play_on_phone_posts_the_track_as_a_voice_message(encore: Encore, sim: DiscordSimulator) -> None:
    await encore.start()
    alice = sim.user("alice")
    card, delivery = await finished(sim, alice)
    track = next(a for a in delivery.attachments if a.content_type.startswith("audio/"))
    assert not on_phone(delivery).inline  # the problem: a phone offers the audio file as a download
    assert "Play on phone" in str(card.components)

    reply = await answer(await play_on_phone(alice, card))
    voice = await sim.wait_for_message(card.channel_id, is_voice)
    assert f"/{voice.channel_id}/{voice.id}" in reply.content
    assert "Posted as a voice message" in reply.content

    # what people see: a reply to the track, nothing but the voice message, no ping
    assert voice.reply_to == delivery.id
    assert (voice.content, voice.embeds, voice.components, voice.mentions) == ("", [], [], [])
    [attachment] = voice.attachments
    assert (attachment.filename, attachment.content_type) == (FILENAME, "audio/ogg")
    shown = on_phone(voice)
    assert shown.inline, shown.why
    info = audio_info(attachment.data)
    assert (info.codec, info.channels, info.sample_rate) == ("opus", 1, 48000)
    assert shown.duration_s == pytest.approx(audio_info(track.data).duration_s, abs=0.02)
    assert len(shown.waveform) == 30  # a point per 100 ms of the 3 s track
    assert max(shown.waveform) == 255

    # the request, as the bot sent it, passes Discord's official OpenAPI spec and its rules beyond it
    [call] = [
        c for c in sim.requests_to(CREATE) if isinstance(c.body, dict) and c.body.get("flags") == IS_VOICE_MESSAGE
    ]
    assert call.ok
    assert validate_request("/channels/{channel_id}/messages", "POST", call.body) == {}
    assert message_rules(call.body, len(call.files)) == {}
    [meta] = call.body["attachments"]
    assert (meta["id"], meta["filename"], [f.field_name for f in call.files]) == (0, FILENAME, ["files[0]"])
    assert base64.b64decode(meta["waveform"]) == shown.waveform
    assert set(call.body) == {"flags", "attachments", "allowed_mentions", "nonce", "enforce_nonce", "message_reference"}


async def test_a_double_click_posts_it_once(encore: Encore, sim: DiscordSimulator) -> None:
    await encore.start()
    alice, bob = sim.user("alice"), sim.user("bob")
    card, _ = await finished(sim, alice)
    clicks = await asyncio.gather(play_on_phone(alice, card), play_on_phone(bob, card), play_on_phone(alice, card))
    replies = [(await answer(click)).content for click in clicks]
    posted = [r for r in replies if "Posted as a voice message" in r]
    others = [r for r in replies if r not in posted]
    assert len(posted) == 1, replies
    # the others came while it was being posted, or after: they say so
    assert all(
        "being posted as a voice message right now" in r or "posted as a voice message already" in r for r in others
    )
    voice = await sim.wait_for_message(card.channel_id, is_voice)
    later = await answer(await play_on_phone(alice, card))  # once it is there, the button says where
    assert "posted as a voice message already" in later.content
    assert f"/{voice.id}" in later.content
    assert voice_messages(sim) == [voice]
    assert len([c for c in sim.requests_to(CREATE) if isinstance(c.body, dict) and c.body.get("flags")]) == 1


async def test_nobody_from_elsewhere_posts_someone_elses_track(encore: Encore, sim: DiscordSimulator) -> None:
    await encore.start()
    card, _ = await finished(sim, sim.user("alice"), prompt="home secret")
    job_id = job_id_of(card)
    shown = await (await away(sim, "alice").slash("music show", job=job_id)).wait_original()
    for name in ("eve", "bob"):  # eve isn't in home at all; bob is, but acts in away
        reply = await answer(await play_on_phone(away(sim, name), shown))
        assert "Only the person who asked for this track can post it as a voice message" in reply.content
        assert "outside the server it was made in" in reply.content
        assert "home secret" not in reply.content

    # in home, a member who can't see the job's channel may not either
    staff = sim.channel("staff")
    private = await sim.user("mod").slash("music generate", channel_id=staff.id, prompt="staff only", duration=3)
    private_card = await private.wait_original(status_is("Done"))
    shown_here = await (await sim.user("mod").slash("music show", job=job_id_of(private_card))).wait_original()
    reply = await answer(await play_on_phone(sim.user("bob"), shown_here))
    assert "channel you can't see" in reply.content
    assert voice_messages(sim) == []

    # the requester may, from anywhere: it goes in her track's own channel, replying to it
    mine = await answer(await play_on_phone(away(sim, "alice"), shown))
    assert "Posted as a voice message" in mine.content
    voice = await sim.wait_for_message(card.channel_id, is_voice)
    assert voice.channel_id == card.channel_id != shown.channel_id


async def test_a_voice_message_deleted_since_is_posted_again(encore: Encore, sim: DiscordSimulator) -> None:
    await encore.start()
    card, _ = await finished(sim, sim.user("alice"))
    await answer(await play_on_phone(sim.user("alice"), card))
    first = await sim.wait_for_message(card.channel_id, is_voice)
    await sim.user("mod").delete_message(first)  # a moderator took it down
    again = await answer(await play_on_phone(sim.user("bob"), card))
    assert "Posted as a voice message" in again.content
    [second] = voice_messages(sim)
    assert second.id != first.id
    assert f"/{second.id}" in again.content


async def test_a_track_no_longer_kept_says_so(encore: Encore, sim: DiscordSimulator) -> None:
    bot = await encore.start()
    card, _ = await finished(sim, sim.user("alice"))
    job = await bot.service.get(job_id_of(card))
    assert job.output_path is not None
    Path(job.output_path).unlink()  # as retention does after [storage] keep_files_days
    for _ in range(2):  # and it says so again: nothing was left claimed
        reply = await answer(await play_on_phone(sim.user("alice"), card))
        assert "no longer kept (Encore keeps tracks for 30 days)" in reply.content
    assert voice_messages(sim) == []


async def test_a_track_too_long_for_a_voice_message_says_so(encore: Encore, sim: DiscordSimulator) -> None:
    encore.configure(discord={"voice_message_max_s": 2})
    await encore.start()
    card, _ = await finished(sim, sim.user("alice"))
    reply = await answer(await play_on_phone(sim.user("alice"), card))
    assert "too long for a voice message: Encore posts voice messages of up to 0:02" in reply.content
    assert voice_messages(sim) == []


async def test_without_send_voice_messages_it_says_what_to_fix_and_works_once_given(
    encore: Encore, sim: DiscordSimulator
) -> None:
    await encore.start()
    card, _ = await finished(sim, sim.user("alice"))
    await sim.set_bot_permissions(card.channel_id, DEFAULT_BOT_PERMISSIONS & ~Permission.SEND_VOICE_MESSAGES)
    reply = await answer(await play_on_phone(sim.user("alice"), card))
    assert "give me Send Voice Messages there" in reply.content
    await sim.set_bot_permissions(card.channel_id, DEFAULT_BOT_PERMISSIONS)
    again = await answer(await play_on_phone(sim.user("alice"), card))
    assert "Posted as a voice message" in again.content
    assert len(voice_messages(sim)) == 1


async def test_the_button_works_after_a_restart_and_delete_takes_the_voice_message_too(
    encore: Encore, sim: DiscordSimulator
) -> None:
    await encore.start()
    card, delivery = await finished(sim, sim.user("alice"))
    await encore.restart()
    await answer(await play_on_phone(sim.user("alice"), card))
    voice = await sim.wait_for_message(card.channel_id, is_voice)
    deleted = await sim.user("alice").click(card, f"encore:delete:{job_id_of(card)}")
    await deleted.wait_message(lambda m: "Deleted" in m.content)
    for message in (card, delivery, voice):
        await sim.wait_for_delete(message.id)


async def test_a_server_can_post_every_track_as_a_voice_message(encore: Encore, sim: DiscordSimulator) -> None:
    await encore.start()
    guild_id = sim.guild.id
    boss = sim.user("boss")
    settings = await (await boss.slash("musicadmin settings")).wait_original()
    assert "voice_messages: off" in str(settings.embeds)

    async def set_voice_messages(value: str) -> SimMessage:
        picked = await boss.select(settings, f"encore:admin:{guild_id}", ["voice_messages"])
        form = await picked.wait_modal()
        field = form["components"][0]
        inner = field.get("component") or field["components"][0]
        return await (await boss.submit_modal(picked, {inner["custom_id"]: value})).wait_original()

    assert "isn't on or off" in (await set_voice_messages("sometimes")).content
    assert "**voice_messages** is now on" in (await set_voice_messages("on")).content
    card, delivery = await finished(sim, sim.user("alice"), prompt="every track")
    voice = await sim.wait_for_message(card.channel_id, lambda m: is_voice(m) and m.reply_to == delivery.id)
    assert on_phone(voice).inline
    # a batch of variations: each track gets its own
    handle = await sim.user("bob").slash("music generate", prompt="four takes", duration=2, count=2)
    batch = await handle.wait_followup(lambda m: len(m.attachments) == 2)
    await sim.wait_for_message(
        card.channel_id, lambda m: len([v for v in voice_messages(sim) if v.reply_to == batch.id]) == 2
    )
    posted = [v for v in voice_messages(sim) if v.reply_to == batch.id]
    assert len(posted) == 2
    # the button on a track posted that way says where it is
    again = await answer(await play_on_phone(sim.user("alice"), card))
    assert (
        f"posted as a voice message already: https://discord.com/channels/{guild_id}/{card.channel_id}/{voice.id}"
        in again.content
    )

    assert "**voice_messages** is now off" in (await set_voice_messages("off")).content
    quiet_card, _ = await finished(sim, sim.user("alice"), prompt="just the file")
    # nothing was posted by itself: the button is the first to post it
    reply = await answer(await play_on_phone(sim.user("alice"), quiet_card))
    assert "Posted as a voice message" in reply.content
    assert len(voice_messages(sim)) == 4
