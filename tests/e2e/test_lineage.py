"""Continuations keep their lineage on every path: a reply that mentions Encore, the Continue this track menu,
Extend, Regenerate and /music melody with continuation. Each records its parent, its part and the parent's
MusicGen version, and Full track posts the whole chain, measured by decoding it."""

from __future__ import annotations

import io
from pathlib import Path

import av
import pytest

from tests.e2e.conftest import Encore, card_field, default_guild, job_id_of, status_is
from tests.fakes.audio import audio_info, decode_pcm, make_wav
from tests.fakes.discord import DiscordSimulator, SimFile, SimUser
from tests.fakes.discord.models import GuildConfig, MemberConfig, SimMessage
from tests.fakes.replicate import FakeReplicate

VERSION = "stereo-large"  # not the default (stereo-melody-large): a continuation must keep it


@pytest.fixture(autouse=True)
def _auto(fake: FakeReplicate) -> None:
    fake.auto_advance = True


def is_track(message: SimMessage) -> bool:
    return any(a.filename.endswith(".wav") for a in message.attachments)


def track_of(message: SimMessage) -> bytes:
    return next(a.data for a in message.attachments if a.filename.endswith(".wav"))


def seconds(data: bytes) -> float:
    return audio_info(data).duration_s


async def generate(user: SimUser, prompt: str, duration: int) -> tuple[SimMessage, SimMessage]:
    """A finished track: its card (Done) and the message that delivered it."""
    handle = await user.slash("music generate", prompt=prompt, duration=duration, model_version=VERSION)
    delivered = await handle.wait_message(is_track)
    return await handle.wait_original(status_is("Done")), delivered


async def reply_continue(sim: DiscordSimulator, user: SimUser, target: SimMessage, text: str):
    """Reply to ``target`` mentioning Encore; the new job's card (Done) and its delivered track."""
    mark = sim.mark()
    reply = await user.send_message(text, reply_to=target, mention_bot=True)
    card = await sim.wait_for_message(reply.channel_id, lambda m: m.reply_to == reply.id, since=mark)
    delivered = await sim.wait_for_message(card.channel_id, lambda m: m.reply_to == card.id and is_track(m), since=mark)
    return await sim.wait_for_edit(card.id, status_is("Done")), delivered


async def menu_continue(user: SimUser, target: SimMessage, add_s: int):
    """**Continue this track** on ``target``; the new job's card (Done) and its delivered track."""
    opened = await user.message_command("Continue this track", target)
    await opened.wait_modal()
    submitted = await user.submit_modal(opened, {"Prompt (optional)": "", "Seconds to add (1-20)": str(add_s)})
    delivered = await submitted.wait_message(is_track)
    return await submitted.wait_original(status_is("Done")), delivered


async def lineage(user: SimUser, card: SimMessage) -> tuple[str, str]:
    """What **Info** says of a card's job: its lineage and its settings."""
    info = await (await user.click(card, f"encore:info:{job_id_of(card)}")).wait_original()
    assert info.is_ephemeral
    fields = {f["name"]: f["value"] for f in info.embeds[0]["fields"]}
    return fields.get("Lineage", ""), fields["Settings"]


async def full_track(user: SimUser, card: SimMessage, *, part: int, total_s: float) -> SimMessage:
    """Full track on ``card``: the whole track of part ``part``, ``total_s`` long as decoded."""
    handle = await user.click(card, f"encore:full:{job_id_of(card)}")
    full = await handle.wait_message(lambda m: bool(m.attachments))
    assert f"part {part}" in full.content
    assert seconds(full.attachments[0].data) == pytest.approx(total_s, abs=0.01)
    return full


@pytest.mark.both_backends  # a key job flow, on both storage backends
async def test_replies_to_encores_tracks_continue_the_chain(encore: Encore, sim: DiscordSimulator) -> None:
    await encore.start()
    alice = sim.user("alice")
    card1, track1 = await generate(alice, "harbour lights", 4)
    part1 = job_id_of(card1)

    card2, track2 = await reply_continue(sim, alice, track1, "make it jazzier +6s")
    text2, settings2 = await lineage(alice, card2)
    assert text2 == f"part 2, continuing `{part1}`"
    assert f"`model_version` = {VERSION}" in settings2
    assert card_field(card2, "Track") == "Part 2 · total 0:10 (+6 s)"
    assert card2.embeds[0]["title"] == "make it jazzier"

    card3, track3 = await reply_continue(sim, alice, track2, "+5s")
    text3, settings3 = await lineage(alice, card3)
    assert text3 == f"part 3, continuing `{job_id_of(card2)}`"
    assert f"`model_version` = {VERSION}" in settings3
    assert card_field(card3, "Track") == "Part 3 · total 0:15 (+5 s)"
    assert card3.embeds[0]["title"] == "make it jazzier"  # no prompt given: the parent's

    full = await full_track(alice, card1, part=3, total_s=4 + 6 + 5)  # on the first part's card
    whole = decode_pcm(full.attachments[0].data, sample_rate=32000, channels=2).data
    assert whole.startswith(decode_pcm(track_of(track1), sample_rate=32000, channels=2).data)
    assert whole == decode_pcm(track_of(track3), sample_rate=32000, channels=2).data


async def test_menu_on_encores_tracks_continues_the_chain(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    await encore.start()
    alice = sim.user("alice")
    card1, track1 = await generate(alice, "rainy tram", 3)

    card2, track2 = await menu_continue(alice, track1, 5)
    text2, settings2 = await lineage(alice, card2)
    assert text2 == f"part 2, continuing `{job_id_of(card1)}`"
    assert f"`model_version` = {VERSION}" in settings2
    assert card2.embeds[0]["title"] == "rainy tram"

    card3, _ = await menu_continue(alice, track2, 4)
    text3, _ = await lineage(alice, card3)
    assert text3 == f"part 3, continuing `{job_id_of(card2)}`"
    assert card_field(card3, "Track") == "Part 3 · total 0:12 (+4 s)"
    assert [p.input["model_version"] for p in fake.predictions.values()] == [VERSION] * 3

    await full_track(alice, card2, part=3, total_s=3 + 5 + 4)  # on a middle part's card: the newest part


async def test_the_menu_on_a_card_continues_its_job(encore: Encore, sim: DiscordSimulator) -> None:
    """A card has no audio of its own (only a waveform), but its job does: the menu continues that job."""
    await encore.start()
    alice = sim.user("alice")
    card1, _ = await generate(alice, "tiny waltz", 2)
    card2, track2 = await menu_continue(alice, card1, 3)
    text2, _ = await lineage(alice, card2)
    assert text2 == f"part 2, continuing `{job_id_of(card1)}`"
    assert seconds(track_of(track2)) == pytest.approx(5, abs=0.01)


@pytest.mark.both_backends  # a key job flow, on both storage backends
async def test_the_menu_on_variations_continues_the_one_it_takes(encore: Encore, sim: DiscordSimulator) -> None:
    """Variations arrive together in one message: the menu continues the first (whose audio it takes); on the
    batch's card, which names no one variation, it continues none."""
    await encore.start()
    alice = sim.user("alice")
    handle = await alice.slash("music generate", prompt="two takes", duration=2, count=2, model_version=VERSION)
    delivered = await handle.wait_message(lambda m: sum(a.filename.endswith(".wav") for a in m.attachments) == 2)
    batch_card = await handle.wait_original(status_is("Done"))
    first = next(a.filename for a in delivered.attachments if a.filename.endswith(".wav"))  # two-takes-<id>-v1-…
    card2, _ = await menu_continue(alice, delivered, 3)
    text2, _ = await lineage(alice, card2)
    assert text2 == f"part 2, continuing `{first.split('-v1-')[0].rsplit('-', 1)[1]}`"
    refused = await (await alice.message_command("Continue this track", batch_card)).wait_original()
    assert refused.is_ephemeral
    assert "has no audio" in refused.content


async def test_a_track_no_longer_kept_is_continued_from_its_message(encore: Encore, sim: DiscordSimulator) -> None:
    """When the whole track isn't on disk any more, the delivered file is continued, still as the next part."""
    bot = await encore.start()
    alice = sim.user("alice")
    card1, track1 = await generate(alice, "old tape", 3)
    kept = await bot.service.get(job_id_of(card1))
    assert kept.output_path is not None
    Path(kept.output_path).unlink()
    card2, track2 = await reply_continue(sim, alice, track1, "+4s")
    text2, settings2 = await lineage(alice, card2)
    assert text2 == f"part 2, continuing `{job_id_of(card1)}`"
    assert f"`model_version` = {VERSION}" in settings2
    assert seconds(track_of(track2)) == pytest.approx(3 + 4, abs=0.01)


async def test_continuing_someone_elses_audio_starts_a_chain(encore: Encore, sim: DiscordSimulator) -> None:
    await encore.start()
    alice, bob = sim.user("alice"), sim.user("bob")
    clip = await bob.send_message("my riff", files=[SimFile("riff.wav", make_wav(3), "audio/wav")])

    card2, track2 = await menu_continue(alice, clip, 5)
    text2, _ = await lineage(alice, card2)
    assert text2 == "part 2, continuing `a clip`"  # bob's audio is part 1, not a job

    card3, _ = await reply_continue(sim, alice, track2, "add drums +4s")
    text3, _ = await lineage(alice, card3)
    assert text3 == f"part 3, continuing `{job_id_of(card2)}`"
    assert card_field(card3, "Track") == "Part 3 · total 0:12 (+4 s)"

    await full_track(alice, card2, part=3, total_s=3 + 5 + 4)


async def test_a_retake_of_a_part_continues_the_same_parent(encore: Encore, sim: DiscordSimulator) -> None:
    await encore.start()
    alice = sim.user("alice")
    card1, _ = await generate(alice, "slow sunrise", 2)
    extend = await alice.click(card1, f"encore:extend:{job_id_of(card1)}")
    card2 = await extend.wait_original(status_is("Done"))
    retake = await alice.click(card2, f"encore:regen:{job_id_of(card2)}")
    await retake.wait_message(is_track)
    card2b = await retake.wait_original(status_is("Done"))
    text, settings = await lineage(alice, card2b)
    assert text == f"part 2, continuing `{job_id_of(card1)}`"
    assert f"`model_version` = {VERSION}" in settings
    assert card_field(card2b, "Track") == "Part 2 · total 0:12 (+10 s)"


async def test_melody_with_continuation_is_part_two(encore: Encore, sim: DiscordSimulator) -> None:
    await encore.start()
    alice = sim.user("alice")
    clip = SimFile("hum.wav", make_wav(3), "audio/wav")
    options = {"audio": clip, "prompt": "brass band", "duration": 6, "options": "continuation=true"}
    handle = await alice.slash("music melody", options=options)
    await handle.wait_message(is_track)
    card1 = await handle.wait_original(status_is("Done"))
    text1, _ = await lineage(alice, card1)
    assert text1 == "part 2, continuing `a clip`"
    extend = await alice.click(card1, f"encore:extend:{job_id_of(card1)}")
    card2 = await extend.wait_original(status_is("Done"))
    assert card_field(card2, "Track") == "Part 3 · total 0:16 (+10 s)"


def two_servers() -> list[GuildConfig]:
    return [default_guild(), default_guild(name="Other Server", members=[MemberConfig("eve")])]


@pytest.mark.parametrize("guilds", [two_servers()])
async def test_the_requester_continues_her_track_in_another_server(encore: Encore, sim: DiscordSimulator) -> None:
    """A track continued in another server by its requester (she may: she re-posts its card there and extends
    it) is the next part of the chain and keeps her prompt, which is hers to take anywhere. (Someone else
    can't continue it there at all: test_permissions; and the core would leave the prompt behind:
    tests/integration/test_lineage_prompt.py.)"""
    await encore.start()
    home, other = sim.guilds
    card1, _ = await generate(sim.user("alice", guild_id=home.id), "harbour at dawn", 3)
    alice_there = sim.user("alice", guild_id=other.id)
    shown = await (await alice_there.slash("music show", job=job_id_of(card1))).wait_original()
    assert shown.guild_id == other.id

    extend = await alice_there.click(shown, f"encore:extend:{job_id_of(card1)}")
    delivered = await extend.wait_message(is_track)
    card2 = await extend.wait_original(status_is("Done"))
    assert card2.guild_id == other.id
    assert "harbour at dawn" in card2.embeds[0]["title"]
    [audio] = [a for a in delivered.attachments if a.filename.endswith(".wav")]
    with av.open(io.BytesIO(audio.data)) as container:  # the file's tags: title from the prompt
        assert "harbour at dawn" in str(container.metadata.get("title"))
    text2, _ = await lineage(alice_there, card2)
    assert text2 == f"part 2, continuing `{job_id_of(card1)}`"  # the lineage itself is kept
