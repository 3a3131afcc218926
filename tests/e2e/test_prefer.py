"""``/music prefer``: a person's own defaults (model, length, format, variations), used where they leave an option
out, shown on ``/music usage``, narrowed by each server's rules, never a way around a limit, and theirs alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.conftest import Encore, accepted, admin_set, card_field, default_guild, job_id_of, status_is
from tests.fakes.audio import audio_info, make_wav
from tests.fakes.discord import DiscordSimulator, SimFile
from tests.fakes.discord.models import MemberConfig, SimMessage
from tests.fakes.discord.users import OptionValue, SimUser
from tests.fakes.elevenlabs import FakeElevenLabs
from tests.fakes.replicate import FakeReplicate

HUM = SimFile("hum.wav", make_wav(4, sample_rate=32000, channels=1), "audio/wav")


async def prefer(user: SimUser, **options: OptionValue) -> SimMessage:
    """The private answer to ``/music prefer`` with ``options``."""
    message = await (await user.slash("music prefer", options=options)).wait_message()
    assert message.is_ephemeral
    return message


async def usage(user: SimUser) -> str:
    message = await (await user.slash("music usage")).wait_message()
    return card_field(message, "Your defaults") or ""


async def inputs(fake: FakeReplicate, n: int) -> list[dict[str, Any]]:
    """The inputs of the next ``n`` predictions."""
    return [fake.prediction(await fake.wait_for_prediction()).input for _ in range(n)]


def note_says(text: str) -> Callable[[SimMessage], bool]:
    return lambda m: text in m.content


async def test_defaults_are_used_shown_and_explicit_options_still_win(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    fake.auto_advance = True
    await encore.start()
    alice = sim.user("alice")
    saved = await prefer(alice, model="musicgen", length=4, format="mp3", variations=2)
    assert saved.embeds[0]["title"] == "Your defaults are saved"
    assert [card_field(saved, name) for name in ("Model", "Length", "Format", "Variations")] == [
        "MusicGen",
        "4 s",
        "mp3",
        "2 at once",
    ]
    assert await usage(alice) == "Model: MusicGen · Length: 4 s · Format: mp3 · Variations: 2 at once"

    handle = await alice.slash("music generate", prompt="my usual")
    card = await accepted(handle)
    assert card_field(card, "Duration") == "4 s"
    made = await inputs(fake, 2)  # two variations, 4 s, MP3
    assert [(i["duration"], i["output_format"]) for i in made] == [(4, "mp3"), (4, "mp3")]
    delivered = await handle.wait_message(lambda m: len(m.attachments) == 2)
    assert all(a.filename.endswith(".mp3") and round(audio_info(a.data).duration_s) == 4 for a in delivered.attachments)
    await handle.wait_original(status_is("Done"))
    assert not [m for m in handle.followups if m.content.startswith("Note:")]  # nothing was narrowed

    # What a command is given wins over the defaults.
    explicit = await alice.slash(
        "music generate", options={"prompt": "not usual", "duration": 3, "count": 1, "options": "output_format=wav"}
    )
    await accepted(explicit)
    [given] = await inputs(fake, 1)
    assert (given["duration"], given["output_format"]) == (3, "wav")
    await explicit.wait_file()
    done = await explicit.wait_original(status_is("Done"))

    # Buttons keep their track's settings: Variations makes three more of that 3 s WAV track, not two 4 s MP3s.
    vary = await alice.click(done, f"encore:vary:{job_id_of(done)}")
    await vary.wait_original()
    assert [(i["duration"], i["output_format"]) for i in await inputs(fake, 3)] == [(3, "wav")] * 3


async def test_length_and_format_apply_to_songs_and_melodies(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate, eleven: FakeElevenLabs
) -> None:
    fake.auto_advance = True
    await encore.start()
    bob = sim.user("bob")
    await prefer(bob, length=5, format="opus")
    song = await bob.slash("music song", prompt="my kind of song")
    audio = await song.wait_file()
    [generation] = eleven.generations
    assert (generation.music_length_ms, generation.output_format) == (5000, "opus_48000_128")
    assert audio.filename.endswith(".opus")

    # MusicGen makes no Opus: the length applies, the format is left out, and bob is told (privately).
    melody = await bob.slash("music melody", audio=HUM, prompt="strings")
    await accepted(melody)
    [made] = await inputs(fake, 1)
    assert (made["duration"], made.get("output_format", "wav")) == (5, "wav")
    note = await melody.wait_followup(note_says("doesn't make opus"))
    assert note.is_ephemeral

    # The message menu's "Use as melody" with its length left empty takes the default too.
    posted = await bob.send_message("my humming", files=[HUM])
    menu = await bob.message_command("Use as melody", posted)
    form = await menu.wait_modal()
    fields = {row["components"][0]["label"]: row["components"][0]["custom_id"] for row in form["components"]}
    submitted = await bob.submit_modal(menu, {fields["Prompt"]: "cello", fields["Length in seconds"]: ""})
    await accepted(submitted)
    [made] = await inputs(fake, 1)
    assert made["duration"] == 5


async def test_the_servers_rules_narrow_defaults_with_a_note(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    await encore.start()
    await admin_set(sim, "max_duration_s", "6")
    await admin_set(sim, "allowed_models", "musicgen, riffusion")
    alice = sim.user("alice")
    saved = await prefer(alice, model="stable-audio", length=20)  # fine for the model: said, not refused
    here = card_field(saved, "On this server") or ""
    assert "Stable Audio Open isn't enabled on this server" in here
    assert "at most 6 s on this server: yours will be 6 s here" in here
    assert "at most 6 s" in await usage(alice)

    handle = await alice.slash("music generate", prompt="narrowed")
    card = await accepted(handle)
    assert card_field(card, "Model") == "MusicGen (stereo-melody-large)"  # the server's default model
    [made] = await inputs(fake, 1)
    assert made["duration"] == 6  # the server's cap, not the preferred 20 s
    note = await handle.wait_followup(note_says("isn't enabled on this server"))
    assert note.is_ephemeral
    assert "over this server's limit: this one is 6 s" in note.content

    # A length given outright is still refused over the cap: a default narrows, a request is refused.
    refused = await (await alice.slash("music generate", prompt="too long", duration=20)).wait_message()
    assert "at most 6 seconds" in refused.content
    assert len(fake.predictions) == 1


async def test_a_default_cannot_get_round_a_quota(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    await encore.start()
    await admin_set(sim, "user_daily_jobs", "2")
    alice = sim.user("alice")
    saved = await prefer(alice, variations=4)
    assert "You may make 2 track(s) a day here" in (card_field(saved, "On this server") or "")
    refused = await (await alice.slash("music generate", prompt="four at once", duration=2)).wait_message()
    assert refused.is_ephemeral
    assert "2" in refused.content
    assert not fake.predictions  # nothing submitted
    assert encore.bot is not None
    assert await encore.bot.service.jobs_of(alice.id) == []  # nothing stored, no quota taken
    ok = await alice.slash("music generate", prompt="two then", duration=2, count=2)  # asking for fewer works
    await accepted(ok)


def _two_servers() -> list[Any]:
    other = default_guild(name="Other Server", members=[MemberConfig("alice"), MemberConfig("dave")])
    return [default_guild(), other]


@pytest.mark.parametrize("guilds", [_two_servers()])
async def test_defaults_are_a_persons_own_and_follow_them_to_other_servers(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    await encore.start()
    home, other = sim.guilds
    await prefer(sim.user("alice", guild_id=home.id), length=3, variations=2)

    bob = sim.user("bob", guild_id=home.id)
    assert (await usage(bob)).startswith("None set")
    await accepted(await bob.slash("music generate", prompt="bob's own"))
    [made] = await inputs(fake, 1)  # not alice's: one track of MusicGen's default 8 s
    assert made["duration"] == 8
    dave = sim.user("dave", guild_id=other.id)
    await accepted(await dave.slash("music generate", prompt="dave's own"))
    assert [i["duration"] for i in await inputs(fake, 1)] == [8]

    alice_there = sim.user("alice", guild_id=other.id)
    assert "Length: 3 s" in await usage(alice_there)
    await accepted(await alice_there.slash("music generate", prompt="alice elsewhere"))
    assert [i["duration"] for i in await inputs(fake, 2)] == [3, 3]


async def test_bad_defaults_are_explained_and_nothing_changes(encore: Encore, sim: DiscordSimulator) -> None:
    await encore.start()
    alice = sim.user("alice")
    await prefer(alice, length=40)  # no model: any model's length
    too_long = await prefer(alice, model="musicgen")
    assert "MusicGen makes 1-30 s here (you chose 40 s)" in too_long.content
    no_mp3 = await prefer(alice, model="stable-audio", length=10, format="mp3")
    assert "Stable Audio Open doesn't make mp3 (it makes only wav)" in no_mp3.content
    assert await usage(alice) == "Model: — · Length: 40 s · Format: — · Variations: —"

    cleared = await prefer(alice, clear=True)
    assert cleared.embeds[0]["title"] == "Your defaults are cleared"
    assert (await usage(alice)).startswith("None set")
