"""Lyrics: a song's lyrics to read (the Lyrics button, privately) and synced lyrics (.lrc) timed by ElevenLabs'
word timestamps; instrumentals say so; hostile lyrics and broken timestamps are shown inert and bounded.

Two servers: "home", where alice makes her songs (bob is a member; "staff" is a channel only moderators see),
and "away", where eve is (not in home at all) and alice and bob are too.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import pytest

from tests.e2e import test_phone
from tests.e2e.conftest import Encore, card_field, job_id_of, status_is
from tests.e2e.test_phone import away
from tests.e2e.test_plans import plan_id_of
from tests.fakes.discord import DiscordSimulator, InteractionHandle, SimAttachment, SimUser
from tests.fakes.discord.markdown import links
from tests.fakes.discord.models import SimMessage
from tests.fakes.elevenlabs import FakeElevenLabs, plan_length_ms, plan_lyrics, word_timestamps
from tests.lrcparse import Lrc, parse_lrc

MENTION = re.compile(r"<@[!&]?\d+>|<#\d+>|</[^>]+>|@(everyone|here)\b")
guilds = test_phone.guilds  # the same two servers, home and away


async def song(sim: DiscordSimulator, user: SimUser, prompt: str, **options: Any) -> tuple[SimMessage, SimAttachment]:
    """A finished song: its card and its audio as delivered (a followup, or a reply to the card in the channel
    if the song was done before its card was)."""
    handle = await user.slash("music song", prompt=prompt, **{"length": 40, **options})
    card = await handle.wait_original(status_is("Done"))
    job_id = job_id_of(card)
    delivery = await sim.wait_for_message(card.channel_id, lambda m: any(job_id in a.filename for a in m.attachments))
    [audio] = [a for a in delivery.attachments if job_id in a.filename and a.content_type.startswith("audio/")]
    return card, audio


async def lyrics(user: SimUser, card: SimMessage) -> InteractionHandle:
    return await user.click(card, f"encore:lyrics:{job_id_of(card)}")


async def private_text(handle: InteractionHandle) -> str:
    """A private one-line answer to a click."""
    reply = await handle.wait_message(lambda m: bool(m.content))
    assert reply.is_ephemeral, reply.content
    return reply.content


async def lyrics_pages(handle: InteractionHandle) -> list[SimMessage]:
    """The private answer with the lyrics: its messages (the first carries the files), in order."""
    first = await handle.wait_message(lambda m: bool(m.embeds))
    assert first.is_ephemeral
    return [first]


def synced(message: SimMessage) -> Lrc:
    [lrc] = [a for a in message.attachments if a.filename.endswith(".lrc")]
    return parse_lrc(lrc.data.decode())


def first_word_starts(plan: dict[str, Any]) -> list[int]:
    """When the fake ElevenLabs says each lyric line's first word starts (its words are the lines' words), to
    the hundredth of a second as LRC has it."""
    words, starts, index = word_timestamps(plan), [], 0
    for line in plan_lyrics(plan):
        starts.append(words[index]["start_ms"] // 10 * 10)
        index += len(line.split())
    return starts


@pytest.mark.parametrize("model_id", ["music_v1", "music_v2"])
async def test_a_song_shows_its_lyrics_and_synced_lyrics(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs, model_id: str
) -> None:
    encore.configure(elevenlabs={"model_id": model_id})
    await encore.start()
    card, audio = await song(sim, sim.user("alice"), "rain over the harbour")
    assert "Lyrics" in str(card.components)
    [generation] = eleven.generations
    assert generation.body["with_timestamps"] is True  # asked for when each word is sung
    assert generation.words_timestamps == word_timestamps(generation.plan)
    sung = plan_lyrics(generation.plan)
    assert sung  # the fake wrote lyrics for it (a verse and a chorus)

    [page] = await lyrics_pages(await lyrics(sim.user("bob"), card))  # anyone who can see the channel
    [embed] = page.embeds
    assert embed["title"] == f"Lyrics · {generation.metadata['title']}"
    text = embed["description"]
    assert text.splitlines()[0] == "**Verse 1**"
    assert "**Chorus**" in text
    assert [line for line in text.splitlines() if line and not line.startswith("**")] == sung
    assert "Synced lyrics attached" in embed["footer"]["text"]

    [attachment] = page.attachments
    assert attachment.filename == audio.filename.rsplit(".", 1)[0] + ".lrc"  # players find it next to the song
    lrc = synced(page)
    assert lrc.tags["ti"] == generation.metadata["title"]
    assert lrc.tags["length"] == "00:40"
    assert lrc.texts == sung
    assert lrc.times == sorted(lrc.times)
    assert all(0 <= ms < plan_length_ms(generation.plan) for ms in lrc.times)
    assert lrc.times == first_word_starts(generation.plan)  # each line starts when its first word is sung


async def test_an_instrumental_song_says_so(encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs) -> None:
    await encore.start()
    alice = sim.user("alice")
    forced, _ = await song(sim, alice, "a quiet piano piece", instrumental=True)
    seeded, _ = await song(sim, alice, "a quiet piano piece", instrumental=True, seed=5)  # a plan without lyrics
    for card in (forced, seeded):
        assert "Lyrics" in str(card.components)
        assert await private_text(await lyrics(alice, card)) == "This song is instrumental: it has no lyrics."
    # no words to time, so nothing is asked (it would only make the song slower)
    assert [g.body.get("with_timestamps") for g in eleven.generations] == [None, None]


HOSTILE = [
    "[click me](https://evil.example/x) **loud** # heading",
    "@everyone <@4200000000000000002> <@&123456789012345678> <#123456789012345678> </music song:1>",
    "bell\x07 esc\x1b[31m red\u202ereversed\u2066 done",
    "||not a spoiler|| `code` > quote " + "la " * 50,
]


async def test_hostile_lyrics_are_shown_inert_and_bounded(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs
) -> None:
    await encore.start()
    alice = sim.user("alice")
    planned = await alice.slash("music plan", prompt="a song about mischief", length=24)
    plan_card = await planned.wait_original(lambda m: bool(m.embeds) and m.embeds[0]["title"].startswith("Plan:"))
    plan_id = plan_id_of(plan_card)
    mark = sim.mark()
    opened = await alice.select(plan_card, f"encore:planedit:{plan_id}", ["0"])
    await opened.wait_modal()
    await alice.submit_modal(
        opened,
        {
            "Name": "**Verse** @everyone",
            "Seconds (3-120)": "12",
            "Lyrics (one line each; empty: instrumental)": "\n".join(HOSTILE),
        },
    )
    plan_card = await sim.wait_for_edit(plan_card.id, lambda m: "Verse" in str(m.embeds), since=mark)
    compose = await alice.click(plan_card, f"encore:plancompose:{plan_id}")
    await compose.wait_file()
    card = await compose.wait_original(status_is("Done"))

    [page] = await lyrics_pages(await lyrics(alice, card))
    text = page.embeds[0]["description"]
    assert page.mentions == []
    assert page.mention_everyone is False
    assert MENTION.search(text) is None, text  # nothing reads as a mention
    assert links(text).masked == []  # no masked link: the address is in plain sight
    assert "https://evil.example/x" in text
    assert not any(unicodedata.category(c) in ("Cc", "Cf") and c not in "\n\u200b" for c in text)
    lines = text.splitlines()
    assert lines[0] == r"**\*\*Verse\*\* @" + "\u200beveryone**"  # the section's name, as typed
    assert r"\[click me\](https://evil.example/x) \*\*loud\*\* # heading" in lines
    assert r"\|\|not a spoiler\|\| \`code\` > quote la" in lines[-1]
    assert len(lines[-1]) <= 200 + 20  # bounded (escapes aside)

    lrc = synced(page)  # every line timed, none read as a tag, no control characters
    assert len(lrc.lines) == len(HOSTILE)
    assert lrc.texts[0] == "(click me)(https://evil.example/x) **loud** # heading"
    assert lrc.texts[2] == "bell esc (31m redreversed done"
    assert lrc.times == sorted(lrc.times)
    assert all(not unicodedata.category(c).startswith("C") for t in lrc.texts for c in t)


async def test_broken_word_timestamps_are_clamped_or_ignored(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs
) -> None:
    def broken(words: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = [dict(w) for w in words]
        out[0]["start_ms"] = 10**9  # far beyond the song
        out[1]["start_ms"] = -5000  # before it
        out[3], out[4] = out[4], out[3]  # out of order
        out.append({"word": "ghost", "start_ms": 39_999, "end_ms": 10**9})
        return out

    eleven.tamper_words = broken
    await encore.start()
    card, _ = await song(sim, sim.user("alice"), "rain over the harbour")
    [generation] = eleven.generations
    [page] = await lyrics_pages(await lyrics(sim.user("alice"), card))
    lrc = synced(page)
    assert lrc.texts == plan_lyrics(generation.plan)
    assert lrc.times == sorted(lrc.times)
    assert all(0 <= ms < 40_000 for ms in lrc.times)
    assert lrc.times[1:] == first_word_starts(generation.plan)[1:]  # the lines told right are timed by them
    # the first line's first two words were told wrong: it starts at its third
    assert lrc.times[0] == word_timestamps(generation.plan)[2]["start_ms"] // 10 * 10


async def test_nobody_from_elsewhere_reads_someone_elses_lyrics(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs
) -> None:
    await encore.start()
    card, _ = await song(sim, sim.user("alice"), "home secret chorus")
    shown = await (await away(sim, "alice").slash("music show", job=job_id_of(card))).wait_original()
    for name in ("eve", "bob"):  # eve isn't in home at all; bob is, but acts in away
        reply = await private_text(await lyrics(away(sim, name), shown))
        assert "Only the person who asked for this track can see its lyrics outside the server" in reply
        assert "secret" not in reply

    staff = sim.channel("staff")
    private = await sim.user("mod").slash("music song", channel_id=staff.id, prompt="staff only anthem", length=10)
    private_card = await private.wait_original(status_is("Done"))
    here = await (await sim.user("mod").slash("music show", job=job_id_of(private_card))).wait_original()
    reply = await private_text(await lyrics(sim.user("bob"), here))
    assert "channel you can't see" in reply

    [page] = await lyrics_pages(await lyrics(away(sim, "alice"), shown))  # the requester may, from anywhere
    assert "secret" in page.embeds[0]["description"]
    assert card_field(card, "Explicit") == "no"
