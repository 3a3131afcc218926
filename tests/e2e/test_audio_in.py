"""Audio in through Discord: context menus on any message, replies that mention Encore, every format."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import pytest

from tests.e2e.conftest import Encore, card_field, status_is
from tests.fakes.audio import audio_info, decode_pcm, encode_pcm, make_mp3, make_wav, tone_pcm
from tests.fakes.discord import DiscordSimulator, SimFile
from tests.fakes.replicate import FakeReplicate


@pytest.fixture(autouse=True)
def _auto(fake: FakeReplicate) -> None:
    fake.auto_advance = True


def voice_message(seconds: float) -> SimFile:
    """An ogg/opus clip, like a Discord voice message."""
    pcm = tone_pcm(int(48000 * seconds), sample_rate=48000, channels=1, freq_hz=300.0)
    return SimFile(
        "voice-message.ogg",
        encode_pcm(pcm, sample_rate=48000, channels=1, container="ogg", codec="libopus", bit_rate=64_000),
        "audio/ogg",
    )


def m4a(seconds: float) -> SimFile:
    pcm = tone_pcm(int(44100 * seconds), sample_rate=44100, channels=2, freq_hz=523.0)
    data = encode_pcm(pcm, sample_rate=44100, channels=2, container="mp4", codec="aac", bit_rate=128_000)
    return SimFile("hum.m4a", data, "audio/mp4")


def video(seconds: int) -> SimFile:
    """An mp4 with a picture and a sound track: only the sound matters."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        picture = out.add_stream("mpeg4", rate=10)
        picture.width, picture.height, picture.pix_fmt = 64, 64, "yuv420p"
        sound = out.add_stream("aac", rate=44100, layout="stereo")
        for index in range(seconds * 10):
            frame = av.VideoFrame(64, 64, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes([index % 255]) * plane.buffer_size)
            frame.pts, frame.time_base = index, Fraction(1, 10)
            for packet in picture.encode(frame):
                out.mux(packet)
        pcm = tone_pcm(44100 * seconds, sample_rate=44100, channels=2)
        chunk = 1024 * 4
        for start in range(0, len(pcm), chunk):
            frame = av.AudioFrame(format="s16", layout="stereo", samples=len(pcm[start : start + chunk]) // 4)
            frame.planes[0].update(pcm[start : start + chunk])
            frame.sample_rate = 44100
            for packet in sound.encode(frame):
                out.mux(packet)
        for stream in (picture, sound):
            for packet in stream.encode(None):
                out.mux(packet)
    return SimFile("clip.mp4", buffer.getvalue(), "video/mp4")


async def menu(sim: DiscordSimulator, name: str, upload: SimFile, values: dict[str, str]):
    alice = sim.user("alice")
    message = await alice.send_message("listen to this", files=[upload])
    opened = await alice.message_command(name, message)
    await opened.wait_modal()
    return await alice.submit_modal(opened, values)


@pytest.mark.parametrize("upload", [voice_message(4), m4a(4), video(4)], ids=["voice-ogg-opus", "m4a", "mp4-video"])
async def test_continue_this_track_from_the_menu(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate, upload: SimFile
) -> None:
    await encore.start()
    submitted = await menu(sim, "Continue this track", upload, {"Prompt (optional)": "", "Seconds to add (1-20)": "5"})
    audio = await submitted.wait_file()
    assert round(audio_info(audio.data).duration_s) == 9  # 4 s clip + 5 s
    [prediction] = fake.predictions.values()
    assert prediction.input["continuation"] is True
    sent = prediction.input["input_audio"]
    assert sent.startswith(("data:audio/", fake.base_url + "/files/"))  # our prepared clip, never a CDN URL
    card = await submitted.wait_original(status_is("Done"))
    assert card_field(card, "Track") == "Part 2 · total 0:09 (+5 s)"


async def test_a_clip_longer_than_the_window_is_stitched_back(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    await encore.start()
    original = make_wav(45, sample_rate=32000, channels=2, freq_hz=262.0)
    values = {"Prompt (optional)": "more of this", "Seconds to add (1-20)": "10"}
    submitted = await menu(sim, "Continue this track", SimFile("long.wav", original, "audio/wav"), values)
    audio = await submitted.wait_file()
    assert round(audio_info(audio.data).duration_s) == 55
    [prediction] = fake.predictions.values()
    assert prediction.input["duration"] == 30  # the model saw the last 20 s and added 10
    result = decode_pcm(audio.data, sample_rate=32000, channels=2).data
    source = decode_pcm(original, sample_rate=32000, channels=2).data
    assert result[: len(source)] == source  # the whole original first, sample for sample


async def test_use_as_melody_from_the_menu(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    await encore.start()
    submitted = await menu(sim, "Use as melody", voice_message(3), {"Prompt": "orchestral", "Length in seconds": "6"})
    audio = await submitted.wait_file()
    assert round(audio_info(audio.data).duration_s) == 6
    [prediction] = fake.predictions.values()
    assert "continuation" not in prediction.input
    assert prediction.input["prompt"] == "orchestral"


@pytest.mark.parametrize(
    ("upload", "message"),
    [
        (SimFile("broken.mp3", b"ID3\x00garbage" * 50, "audio/mpeg"), "couldn't read that file as audio"),
        (SimFile("empty.wav", make_wav(0), "audio/wav"), "That audio file is empty"),
        (SimFile("silence.wav", b"RIFF" + make_wav(2, freq_hz=0.0)[4:], "audio/wav"), "completely silent"),
    ],
)
async def test_bad_clips_are_refused_before_anything_runs(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate, upload: SimFile, message: str
) -> None:
    await encore.start()
    submitted = await menu(sim, "Continue this track", upload, {"Prompt (optional)": "", "Seconds to add (1-20)": "5"})
    reply = await submitted.wait_message(lambda m: message in m.content)
    assert message in reply.content
    assert fake.predictions == {}


async def test_menu_on_a_message_without_audio(encore: Encore, sim: DiscordSimulator) -> None:
    await encore.start()
    alice = sim.user("alice")
    message = await alice.send_message("just words")
    reply = await (await alice.message_command("Continue this track", message)).wait_original()
    assert reply.is_ephemeral
    assert "has no audio" in reply.content


async def test_seconds_are_checked(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    await encore.start()
    submitted = await menu(sim, "Continue this track", voice_message(2), {"Seconds to add (1-20)": "99"})
    reply = await submitted.wait_message(lambda m: "between 1 and 20 seconds" in m.content)
    assert reply.is_ephemeral
    assert fake.predictions == {}


async def test_reply_to_an_encore_track_continues_it(encore: Encore, sim: DiscordSimulator) -> None:
    await encore.start()
    alice = sim.user("alice")
    first = await alice.slash("music generate", prompt="base track", duration=4)
    await first.wait_file()
    delivered = next(m for m in first.followups if m.attachments)
    mark = sim.mark()
    reply = await alice.send_message("make it jazzier +6s", reply_to=delivered, mention_bot=True)
    card = await sim.wait_for_message(reply.channel_id, lambda m: m.reply_to == reply.id, since=mark)
    track = await sim.wait_for_message(
        card.channel_id,
        lambda m: any(a.filename.endswith(".wav") for a in m.attachments) and m.reply_to == card.id,
        since=mark,
    )
    audio = track.attachments[0]
    assert round(audio_info(audio.data).duration_s) == 10
    assert track.mentions == [alice.id]
    done = await sim.wait_for_edit(card.id, status_is("Done"))
    assert done.embeds[0]["title"] == "make it jazzier"


async def test_reply_carrying_its_own_audio(encore: Encore, sim: DiscordSimulator) -> None:
    await encore.start()
    alice = sim.user("alice")
    anchor = await alice.send_message("my jam")
    mark = sim.mark()
    reply = await alice.send_message("keep going", files=[voice_message(3)], reply_to=anchor, mention_bot=True)
    card = await sim.wait_for_message(reply.channel_id, lambda m: m.reply_to == reply.id, since=mark)
    track = await sim.wait_for_message(
        card.channel_id, lambda m: m.reply_to == card.id and bool(m.attachments), since=mark
    )
    assert round(audio_info(track.attachments[0].data).duration_s) == 13


async def test_reply_to_someone_elses_audio_explains_the_menu(encore: Encore, sim: DiscordSimulator) -> None:
    await encore.start()
    bob, alice = sim.user("bob"), sim.user("alice")
    clip = await bob.send_message("", files=[voice_message(2)])
    mark = sim.mark()
    reply = await alice.send_message("continue this", reply_to=clip, mention_bot=True)
    hint = await sim.wait_for_message(reply.channel_id, lambda m: m.reply_to == reply.id, since=mark)
    assert "Continue this track" in hint.content


async def test_too_long_and_too_large_clips_are_refused(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    encore.configure(audio={"max_input_s": 5.0, "max_input_bytes": 400_000})
    await encore.start()
    alice = sim.user("alice")
    long_clip = SimFile("long.mp3", encoded_mp3(8), "audio/mpeg")  # small file, but 8 s
    handle = await alice.slash("music melody", audio=long_clip, prompt="x")
    reply = await handle.wait_message(lambda m: "limit is 5 s" in m.content)
    assert "too long" in reply.content  # decoding stopped at the limit: how long it would have gone is unknown
    big = SimFile("big.wav", make_wav(10), "audio/wav")  # 1.3 MB
    refused = await (await alice.slash("music melody", audio=big, prompt="x")).wait_original()
    assert refused.is_ephemeral  # refused before anything was downloaded
    assert "That file is 1.2 MiB; the limit is 391 KiB." in refused.content
    assert fake.predictions == {}


def encoded_mp3(seconds: int) -> bytes:
    return make_mp3(seconds, sample_rate=16000, channels=1)
