"""Explicit songs: ElevenLabs marks a song explicit (``song_metadata.is_explicit``). Outside age-restricted
channels a server posts them as spoilers (the default) or not at all (``explicit_songs = refuse``); in an
age-restricted channel they are posted as any other song.

The fake ElevenLabs marks a song explicit when its prompt or lyrics have the word "explicit".
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Encore, admin_set, card_field, card_status, default_guild, job_id_of, status_is
from tests.fakes.discord import DiscordSimulator, InteractionHandle, SimUser
from tests.fakes.discord.models import ChannelConfig, GuildConfig, SimMessage
from tests.fakes.elevenlabs import FakeElevenLabs

EXPLICIT = "an explicit rap about bugs"


@pytest.fixture
def guilds() -> list[GuildConfig]:
    return [default_guild(channels=[ChannelConfig("general"), ChannelConfig("after-dark", nsfw=True)])]


def has_audio(message: SimMessage) -> bool:
    return any(a.content_type.startswith("audio/") for a in message.attachments)


async def song(
    sim: DiscordSimulator, user: SimUser, prompt: str, channel: str = "general"
) -> tuple[InteractionHandle, SimMessage]:
    """A song asked for in ``channel``: the interaction and the message that brought its audio (a followup, or
    a reply to the card in the channel if the song was done before its card was)."""
    handle = await user.slash("music song", channel_id=sim.channel(channel).id, prompt=prompt, length=4)
    card = await handle.wait_original(status_is("Done"))
    job_id = job_id_of(card)
    delivery = await sim.wait_for_message(
        card.channel_id, lambda m: has_audio(m) and any(job_id in a.filename for a in m.attachments)
    )
    return handle, delivery


async def private_text(handle: InteractionHandle) -> str:
    reply = await handle.wait_message(lambda m: bool(m.content))
    assert reply.is_ephemeral, reply.content
    return reply.content


async def test_an_explicit_song_is_a_spoiler_outside_age_restricted_channels(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs
) -> None:
    await encore.start()
    alice = sim.user("alice")

    handle, delivery = await song(sim, alice, EXPLICIT)
    assert eleven.generations[-1].metadata["is_explicit"] is True
    [audio] = delivery.attachments
    assert audio.spoiler  # hidden until clicked
    assert audio.filename.startswith("SPOILER_")
    assert "marked it explicit, so it is a spoiler here" in delivery.content
    card = await handle.wait_original(status_is("Done"))
    assert card_field(card, "Explicit") == "yes"
    job_id = job_id_of(card)

    # its lyrics too: behind spoiler bars, the synced lyrics a spoiler
    shown = await (await alice.click(card, f"encore:lyrics:{job_id}")).wait_message(lambda m: bool(m.embeds))
    text = shown.embeds[0]["description"]
    assert text.startswith("||")
    assert text.endswith("||")
    assert "explicit" in text
    [lrc] = shown.attachments
    assert lrc.spoiler
    assert lrc.filename.endswith(".lrc")

    # a voice message can't be a spoiler: it isn't made here
    refused = await private_text(await alice.click(card, f"encore:phone:{job_id}"))
    assert "a voice message can't be hidden as a spoiler" in refused
    assert not any(m.flags & (1 << 13) for m in sim.messages)

    # its stems are the song's: spoilers too
    split = await alice.click(card, f"encore:stems:{job_id}")
    stems = await split.wait_message(lambda m: len(m.attachments) == 6)
    assert all(a.spoiler for a in stems.attachments)

    # a song that isn't explicit is posted as ever
    _, clean = await song(sim, alice, "a gentle lullaby")
    assert eleven.generations[-1].metadata["is_explicit"] is False
    assert not any(a.spoiler for a in clean.attachments)
    assert "explicit" not in clean.content


async def test_in_an_age_restricted_channel_it_is_posted_normally(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs
) -> None:
    await encore.start()
    alice = sim.user("alice")
    handle, delivery = await song(sim, alice, EXPLICIT, channel="after-dark")
    assert not any(a.spoiler for a in delivery.attachments)
    assert "spoiler" not in delivery.content
    card = await handle.wait_original(status_is("Done"))
    shown = await (await alice.click(card, f"encore:lyrics:{job_id_of(card)}")).wait_message(lambda m: bool(m.embeds))
    assert not shown.embeds[0]["description"].startswith("||")
    assert not any(a.spoiler for a in shown.attachments)
    posted = await private_text(await alice.click(card, f"encore:phone:{job_id_of(card)}"))
    assert "Posted as a voice message" in posted


@pytest.mark.both_backends  # the budgets' sums are SQL of each backend
async def test_a_server_can_refuse_explicit_songs(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs
) -> None:
    encore.configure(limits={"user_daily_jobs": 5, "guild_daily_budget_usd": 10.0})
    await encore.start()
    assert "isn't spoiler or refuse" in (await admin_set(sim, "explicit_songs", "maybe")).content
    assert "**explicit_songs** is now refuse" in (await admin_set(sim, "explicit_songs", "refuse")).content
    alice = sim.user("alice")

    general = sim.channel("general")
    handle = await alice.slash("music song", channel_id=general.id, prompt=EXPLICIT, length=4)
    card = await handle.wait_original(status_is("Failed"))
    assert "ElevenLabs marked this song explicit" in card_status(card)
    assert "posts explicit songs only in age-restricted channels" in card_status(card)
    assert eleven.generations[-1].metadata["is_explicit"] is True  # it was made (and paid for)...
    assert not any(has_audio(m) for m in sim.messages)  # ...but nothing of it was posted
    assert card.custom_ids() == [f"encore:retry:{job_id_of(card)}"]

    # the person's quota is untouched (they got nothing); the server's budget counts what ElevenLabs charged
    usage = await (await alice.slash("music usage")).wait_original()
    assert card_field(usage, "Tracks") == "0 of 5"
    admin = await (await sim.user("boss").slash("music usage")).wait_original()
    assert card_field(admin, "Server tracks") == "0 (no limit)"
    assert (card_field(admin, "Server budget") or "").startswith("$0.03 of $10.00")  # 4 s at $0.0075 a second

    # where it may be posted, it is; and songs that aren't explicit are posted everywhere
    posted, delivery = await song(sim, alice, EXPLICIT, channel="after-dark")
    assert not any(a.spoiler for a in delivery.attachments)
    # its card shown in a channel that isn't age-restricted doesn't show its lyrics there either
    nsfw_card = await posted.wait_original(status_is("Done"))
    shown = await (await alice.slash("music show", channel_id=general.id, job=job_id_of(nsfw_card))).wait_original()
    refused = await private_text(await alice.click(shown, f"encore:lyrics:{job_id_of(nsfw_card)}"))
    assert (
        refused
        == "ElevenLabs marked this song explicit, and this server shows explicit songs only in age-restricted channels."
    )
    _, clean = await song(sim, alice, "a gentle lullaby")
    assert not any(a.spoiler for a in clean.attachments)
    usage = await (await alice.slash("music usage")).wait_original()
    assert card_field(usage, "Tracks") == "2 of 5"

    # back to the default: a spoiler again
    assert "**explicit_songs** is now spoiler" in (await admin_set(sim, "explicit_songs", "default")).content
    _, spoiled = await song(sim, alice, EXPLICIT)
    assert all(a.spoiler for a in spoiled.attachments)
