"""Honest about what it is: every delivered file says it is AI-generated, by which model on which provider, and
a server can ask ElevenLabs to sign MP3 songs and stems with C2PA content credentials (``sign_with_c2pa``)."""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import av
import pytest

from tests.e2e.conftest import Encore, admin_set, default_guild, status_is
from tests.fakes.audio import audio_info, encode_pcm, make_wav, tone_pcm
from tests.fakes.discord import IS_VOICE_MESSAGE, DiscordSimulator, SimAttachment, SimFile
from tests.fakes.discord.models import MemberConfig
from tests.fakes.elevenlabs import FakeElevenLabs, read_manifest
from tests.fakes.replicate import FakeReplicate, OutputFile

TRACK = SimFile("band.wav", make_wav(3, sample_rate=44100, channels=2), "audio/wav")


def tags_of(audio: SimAttachment) -> dict[str, str]:
    """The file's tags as FFmpeg reads them (container and stream: Ogg keeps Vorbis comments on the stream)."""
    with av.open(io.BytesIO(audio.data)) as container:
        return {**container.metadata, **container.streams.audio[0].metadata}


def assert_ai_tagged(audio: SimAttachment, *, model: str, provider: str) -> None:
    tags = tags_of(audio)
    assert (tags["AI_GENERATED"], tags["AI_MODEL"], tags["AI_PROVIDER"]) == ("yes", model, provider)
    assert tags["comment"].startswith(f"AI-generated with {model} on {provider}, by Encore")
    assert tags["encoded_by"] == "Encore"


def _flac_musicgen(fake: FakeReplicate) -> None:
    """MusicGen answering with a FLAC file (models may hand back any audio Encore accepts)."""
    model = fake.models["meta/musicgen"]

    def run(inp: dict[str, Any]) -> tuple[Any, str]:
        pcm = tone_pcm(32000 * int(inp.get("duration", 8)), sample_rate=32000, channels=2)
        flac = encode_pcm(pcm, sample_rate=32000, channels=2, container="flac", codec="flac", bit_rate=None)
        return OutputFile("out.flac", flac, "audio/flac"), "Using seed 7\n"

    fake.add_model(dataclasses.replace(model, run=run))


@pytest.mark.parametrize(
    ("options", "flac", "suffix"),
    [(None, False, ".wav"), ("output_format=mp3", False, ".mp3"), (None, True, ".flac")],
)
async def test_replicate_tracks_are_tagged_ai_generated(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate, options: str | None, flac: bool, suffix: str
) -> None:
    if flac:
        _flac_musicgen(fake)
    fake.auto_advance = True
    await encore.start()
    given: dict[str, str | int] = {"prompt": "tagged honestly", "duration": 3}
    if options:
        given["options"] = options  # the slash option named "options" (advanced settings)
    handle = await sim.user("alice").slash("music generate", options=given)
    audio = await handle.wait_file()
    assert audio.filename.endswith(suffix)
    assert round(audio_info(audio.data).duration_s) == 3
    assert_ai_tagged(audio, model="MusicGen (stereo-melody-large)", provider="Replicate")


@pytest.mark.parametrize(
    ("song_format", "suffix"), [("mp3_44100_128", ".mp3"), ("opus_48000_128", ".opus"), ("pcm_44100", ".wav")]
)
async def test_songs_are_tagged_with_the_elevenlabs_model(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs, song_format: str, suffix: str
) -> None:
    await encore.start()
    handle = await sim.user("alice").slash("music song", prompt="an honest song", length=4, format=song_format)
    audio = await handle.wait_file()
    assert audio.filename.endswith(suffix)
    assert_ai_tagged(audio, model="ElevenLabs Music (music_v1)", provider="ElevenLabs")
    [generation] = eleven.generations
    assert "sign_with_c2pa" not in generation.body  # the server didn't ask for content credentials
    assert read_manifest(audio.data) is None


async def test_a_re_encoded_track_is_tagged_too(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    model = fake.models["meta/musicgen"]

    def run(inp: dict[str, Any]) -> tuple[Any, str]:  # 11.5 MB: over a tier-0 server's 10 MiB
        return OutputFile("out.wav", make_wav(60, sample_rate=48000, channels=2), "audio/wav"), "Using seed 7\n"

    fake.add_model(dataclasses.replace(model, run=run))
    fake.auto_advance = True
    await encore.start()
    audio = await (await sim.user("alice").slash("music generate", prompt="too big")).wait_file()
    assert audio.filename.endswith(".ogg")
    assert_ai_tagged(audio, model="MusicGen (stereo-melody-large)", provider="Replicate")


async def test_a_voice_message_is_tagged_too(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    fake.auto_advance = True
    await encore.start()
    await admin_set(sim, "voice_messages", "on")  # every track posted as a voice message as well
    handle = await sim.user("alice").slash("music generate", prompt="for phones", duration=3)
    card = await handle.wait_original(status_is("Done"))
    voice = await sim.wait_for_message(card.channel_id, lambda m: bool(m.flags & IS_VOICE_MESSAGE))
    [audio] = voice.attachments
    assert_ai_tagged(audio, model="MusicGen (stereo-melody-large)", provider="Replicate")


async def test_c2pa_for_mp3_songs_and_stems_when_the_server_asks(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs
) -> None:
    await encore.start()
    reply = await admin_set(sim, "sign_with_c2pa", "on")
    assert "**sign_with_c2pa** is now on" in reply.content
    assert "ElevenLabs signs only MP3" in reply.content
    alice = sim.user("alice")

    song = await alice.slash("music song", prompt="a signed song", length=4)
    audio = await song.wait_file()
    [generation] = eleven.generations
    assert generation.body["sign_with_c2pa"] is True
    manifest = read_manifest(audio.data)  # delivered exactly as signed: the signature still holds
    assert manifest is not None
    assert manifest["assertions"][0]["data"]["actions"][0]["digitalSourceType"].endswith("trainedAlgorithmicMedia")
    await song.wait_original(status_is("Done"))

    seeded = await alice.slash("music song", prompt="a planned signed song", length=4, seed=11)
    audio = await seeded.wait_file()
    assert eleven.generations[-1].composition_plan is not None
    assert eleven.generations[-1].body["sign_with_c2pa"] is True
    assert read_manifest(audio.data) is not None

    opus = await alice.slash("music song", prompt="an opus song", length=4, format="opus_48000_128")
    audio = await opus.wait_file()
    assert "sign_with_c2pa" not in eleven.generations[-1].body  # ElevenLabs signs only MP3: not asked
    assert_ai_tagged(audio, model="ElevenLabs Music (music_v1)", provider="ElevenLabs")
    await opus.wait_original(status_is("Done"))

    stems = await alice.slash("music stems", audio=TRACK, stems="two")
    message = await stems.wait_message(lambda m: len(m.attachments) == 2)
    [separation] = eleven.separations
    assert separation.sign_with_c2pa
    assert all(read_manifest(a.data) is not None for a in message.attachments)


async def test_c2pa_is_not_asked_for_opus_stems(encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs) -> None:
    encore.configure(elevenlabs={"stems_output_format": "opus_48000_128"})
    await encore.start()
    await admin_set(sim, "sign_with_c2pa", "on")
    handle = await sim.user("alice").slash("music stems", audio=TRACK, stems="two")
    message = await handle.wait_message(lambda m: len(m.attachments) == 2)
    [separation] = eleven.separations
    assert not separation.sign_with_c2pa  # not sent (the fake refuses it for opus, as the API requires)
    assert all(tags_of(a)["AI_PROVIDER"] == "ElevenLabs" for a in message.attachments)


OTHER_SERVER = default_guild(
    name="Other Server", members=[MemberConfig("alice"), MemberConfig("carol", roles=["Admins"])]
)


@pytest.mark.parametrize("guilds", [[default_guild(), OTHER_SERVER]])
async def test_one_servers_c2pa_setting_stays_in_that_server(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs
) -> None:
    await encore.start()
    home, other = sim.guilds
    await admin_set(sim, "sign_with_c2pa", "on", user="carol", guild_id=other.id)
    here = await sim.user("alice", guild_id=home.id).slash("music song", prompt="plain here", length=4)
    audio = await here.wait_file()
    assert "sign_with_c2pa" not in eleven.generations[-1].body
    assert read_manifest(audio.data) is None
    assert_ai_tagged(audio, model="ElevenLabs Music (music_v1)", provider="ElevenLabs")
    there = await sim.user("alice", guild_id=other.id).slash("music song", prompt="signed there", length=4)
    assert read_manifest((await there.wait_file()).data) is not None
