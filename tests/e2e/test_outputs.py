"""What a model hands back is checked before anything reaches Discord: only real audio (and real images where a
model makes a picture) is posted, named for what it really is. Anything else fails the job, with a reason on
the card, and gives the person's quota back."""

from __future__ import annotations

import io
import zipfile

import pytest

from tests.e2e.conftest import Encore, card_status, job_id_of, status_is
from tests.fakes.audio import audio_info, image_info, make_mp3, make_png, make_wav
from tests.fakes.discord import DiscordSimulator, SimFile
from tests.fakes.elevenlabs import FakeElevenLabs
from tests.fakes.models import OutputFile
from tests.fakes.replicate import FakeReplicate

HTML = b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>\n"
ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x02\x00\x3e\x00" + bytes(4000)
WAV_WITHOUT_SAMPLES = make_wav(1)[:44]  # a WAV header and nothing after it


@pytest.fixture(autouse=True)
def _auto(fake: FakeReplicate) -> None:
    fake.auto_advance = True


def bot_files(sim: DiscordSimulator) -> list[str]:
    return [a.filename for m in sim.messages for a in m.attachments]


@pytest.mark.parametrize(
    ("served", "what"),
    [
        (OutputFile("out.wav", HTML, "audio/wav"), "an HTML page named .wav"),
        (OutputFile("out.mp3", ELF, "application/octet-stream"), "an executable named .mp3"),
        (OutputFile("out.wav", WAV_WITHOUT_SAMPLES, "audio/wav"), "a WAV with no audio in it"),
    ],
)
async def test_output_that_is_not_audio_fails_the_job_and_posts_nothing(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate, served: OutputFile, what: str
) -> None:
    encore.configure(limits={"user_daily_jobs": 1})
    await encore.start()
    fake.swap_outputs(lambda _: served)
    bob = sim.user("bob")
    handle = await bob.slash("music generate", prompt="lofi", duration=2)
    card = await handle.wait_original(status_is("Failed"))
    assert "isn't audio" in card_status(card), what
    assert bot_files(sim) == [], what  # nothing was uploaded to Discord
    # The failed job gave its share of the quota back: the one track of the day can still be made.
    fake.swap_outputs(None)
    again = await bob.slash("music generate", prompt="lofi again", duration=2)
    audio = await again.wait_file()
    assert round(audio_info(audio.data).duration_s) == 2


@pytest.mark.parametrize("name", ["out.png", "out.exe", "out"])
async def test_audio_under_another_name_is_posted_as_what_it_is(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate, name: str
) -> None:
    await encore.start()
    mp3 = make_mp3(3)
    fake.swap_outputs(
        lambda _: OutputFile(name, mp3, "image/png" if name.endswith(".png") else "application/x-msdownload")
    )
    handle = await sim.user("alice").slash("music generate", prompt="jazz", duration=3)
    audio = await handle.wait_file()
    assert audio.filename.endswith(".mp3")
    assert audio.content_type == "audio/mpeg"
    assert audio_info(audio.data).codec.startswith("mp3")
    card = await handle.wait_original(status_is("Done"))
    assert all(not f.endswith((".png.mp3", ".exe", ".png")) or f.endswith("-waveform.png") for f in bot_files(sim))
    assert job_id_of(card) in audio.filename


async def test_wav_named_mp3_is_posted_as_wav(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    await encore.start()
    fake.swap_outputs(lambda out: OutputFile("out.mp3", out.data, "audio/mpeg"))
    handle = await sim.user("alice").slash("music generate", prompt="strings", duration=2)
    audio = await handle.wait_file()
    assert audio.filename.endswith(".wav")
    assert audio_info(audio.data).codec == "pcm_s16le"


async def test_spectrogram_that_is_not_an_image_fails_the_blend(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    await encore.start()
    fake.swap_outputs(lambda out: OutputFile(out.name, HTML, out.content_type) if out.name.endswith(".jpg") else out)
    handle = await sim.user("alice").slash("music blend", prompt_a="bells", prompt_b="beats")
    card = await handle.wait_original(status_is("Failed"))
    assert "picture isn't a PNG, JPEG or WebP image" in card_status(card)
    assert bot_files(sim) == []


async def test_spectrogram_is_named_for_its_real_format(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    await encore.start()
    png = make_png(32, 32)
    fake.swap_outputs(lambda out: OutputFile(out.name, png, "image/jpeg") if out.name.endswith(".jpg") else out)
    handle = await sim.user("alice").slash("music blend", prompt_a="bells", prompt_b="beats")
    await handle.wait_file(lambda a: a.filename.endswith(".wav"))
    card = await handle.wait_original(status_is("Done"))
    [spectrogram] = [a for a in card.attachments if "-spectrogram" in a.filename]
    assert spectrogram.filename.endswith("-spectrogram.png")
    assert image_info(spectrogram.data).codec == "png"
    assert card.embeds[0]["image"]["url"] == f"attachment://{spectrogram.filename}"


async def test_song_that_is_not_audio_fails_clearly(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs
) -> None:
    boundary = "encore-test-boundary"
    body = (
        (
            f"--{boundary}\r\nContent-Type: application/json\r\n\r\n"
            '{"song_metadata": {"title": "Trap"}, "composition_plan": null}\r\n'
            f'--{boundary}\r\nContent-Type: audio/mpeg\r\nContent-Disposition: attachment; filename="trap.mp3"\r\n\r\n'
        ).encode()
        + HTML
        + f"\r\n--{boundary}--\r\n".encode()
    )
    eleven.inject(200, path="/v1/music", body=body, content_type=f"multipart/mixed; boundary={boundary}")
    await encore.start()
    handle = await sim.user("alice").slash("music song", prompt="a summer song", length=5)
    card = await handle.wait_original(status_is("Failed"))
    assert "isn't audio" in card_status(card)
    assert bot_files(sim) == []


async def test_stems_that_are_not_audio_fail_clearly(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs
) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("vocals.mp3", make_mp3(2))
        zipped.writestr("accompaniment.mp3", HTML)
    eleven.inject(200, path="/v1/music/stem-separation", body=archive.getvalue(), content_type="application/zip")
    await encore.start()
    track = SimFile("band.wav", make_wav(2, sample_rate=44100), "audio/wav")
    handle = await sim.user("alice").slash("music stems", audio=track, stems="two")
    card = await handle.wait_original(status_is("Failed"))
    assert "isn't audio" in card_status(card)
    assert [f for f in bot_files(sim) if f != "band.wav"] == []
