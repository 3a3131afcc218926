"""Every model, batch and advanced option end to end through Discord: /music generate, melody, blend, models."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.e2e.conftest import Encore, card_field, card_status, status_is, use_cog
from tests.fakes.audio import audio_info, decode_pcm, image_info, make_wav
from tests.fakes.cog import FakeCog
from tests.fakes.discord import DiscordSimulator, SimFile
from tests.fakes.replicate import FakeReplicate


@pytest.fixture(autouse=True)
def _auto(fake: FakeReplicate) -> None:
    fake.auto_advance = True


async def test_stable_audio(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    await encore.start()
    # `options` is also the simulator's name for a mapping of option values, so it goes in there.
    values = {
        "prompt": "rain on a tin roof",
        "model": "stable-audio",
        "duration": 40,
        "options": "steps=30 cfg_scale=4",
    }
    handle = await sim.user("alice").slash("music generate", options=values)
    audio = await handle.wait_file()
    info = audio_info(audio.data)
    assert (round(info.duration_s), info.sample_rate) == (40, 44100)
    card = await handle.wait_original(status_is("Done"))
    assert card_field(card, "Model") == "Stable Audio Open"
    [prediction] = fake.predictions.values()
    assert (prediction.input["steps"], prediction.input["cfg_scale"]) == (30, 4.0)


async def test_advanced_options_and_mp3(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    await encore.start()
    values = {"prompt": "jazz trio", "duration": 3, "options": "output_format=mp3 temperature=0.8 top_k=100"}
    handle = await sim.user("alice").slash("music generate", options=values)
    audio = await handle.wait_file()
    assert audio.filename.endswith(".mp3")
    assert audio.content_type == "audio/mpeg"
    assert round(audio_info(audio.data).duration_s) == 3
    [prediction] = fake.predictions.values()
    assert (prediction.input["temperature"], prediction.input["top_k"]) == (0.8, 100)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"options": "temperature=9"}, "`temperature` must be 0 to 5"),
        ({"options": "steps=10"}, "MusicGen has no parameter `steps`"),
        ({"options": "loud"}, "Write options as `name=value`"),
        ({"model": "stable-audio", "duration": 48}, "between 1 and 47 seconds for Stable Audio Open"),
        ({"model": "stable-audio", "model_version": "large"}, "`model_version` only applies to MusicGen"),
        ({"options": "multi_band_diffusion=true"}, "only works with the mono models"),
    ],
)
async def test_bad_options_are_explained_privately(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate, options: dict[str, object], message: str
) -> None:
    await encore.start()
    handle = await sim.user("alice").slash("music generate", options={"prompt": "ok", **options})  # type: ignore[dict-item]
    reply = await handle.wait_message()
    assert reply.is_ephemeral
    assert message in reply.content
    assert fake.predictions == {}


async def test_options_autocomplete_follows_the_model(encore: Encore, sim: DiscordSimulator) -> None:
    await encore.start()
    alice = sim.user("alice")
    names = [c["value"] for c in await (await alice.autocomplete("music generate", "options", "temp")).wait_choices()]
    assert names == ["temperature=1.0"]
    values = await (await alice.autocomplete("music generate", "options", "top_k=100 output_format=")).wait_choices()
    assert [c["value"] for c in values] == ["top_k=100 output_format=wav", "top_k=100 output_format=mp3"]
    stable = await (
        await alice.autocomplete("music generate", "options", "sampler", model="stable-audio")
    ).wait_choices()
    assert [c["value"] for c in stable] == ["sampler_type=dpmpp-3m-sde"]


async def test_batch_of_variations_in_one_message(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    await encore.start()
    handle = await sim.user("alice").slash("music generate", prompt="four takes", count=4, seed=500, duration=2)
    delivery = await handle.wait_message(lambda m: len(m.attachments) == 4)
    labels = sorted(a.filename.rsplit("-", 2)[-2:] for a in delivery.attachments)
    assert labels == [
        ["v1", "seed500.wav"],
        ["v2", "seed501.wav"],
        ["v3", "seed502.wav"],
        ["v4", "seed503.wav"],
    ]
    assert all(round(audio_info(a.data).duration_s) == 2 for a in delivery.attachments)
    assert "1 · seed 500" in delivery.content
    card = await handle.wait_original(status_is("Done"))
    variations = card_field(card, "Variations") or ""
    assert "4 · seed 503 · `" in variations
    assert "its own row of buttons" in variations
    assert len(fake.predictions) == 4


async def test_blend_shows_the_spectrogram_on_the_card(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    await encore.start()
    handle = await sim.user("alice").slash(
        "music blend", prompt_a="church bells", prompt_b="electronic beats", alpha=0.25, seed_image="og_beat"
    )
    audio = await handle.wait_file(lambda a: a.filename.endswith(".wav"))
    assert round(audio_info(audio.data).duration_s) == 5
    card = await handle.wait_original(status_is("Done"))
    images = {a.filename.rsplit("-", 1)[-1]: a for a in card.attachments}
    assert image_info(images["spectrogram.jpg"].data).codec == "mjpeg"
    assert image_info(images["waveform.png"].data).codec == "png"
    assert card.embeds[0]["image"]["url"] == f"attachment://{images['spectrogram.jpg'].filename}"
    assert card.embeds[0]["thumbnail"]["url"] == f"attachment://{images['waveform.png'].filename}"
    assert "electronic beats (alpha 0.25)" in (card_field(card, "Blended with") or "")
    [prediction] = fake.predictions.values()
    assert (prediction.input["alpha"], prediction.input["seed_image_id"]) == (0.25, "og_beat")


async def test_melody_from_an_attached_clip(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    await encore.start()
    hum = SimFile("hum.wav", make_wav(3, sample_rate=16000, channels=1), "audio/wav")
    handle = await sim.user("alice").slash("music melody", audio=hum, prompt="string quartet", duration=6)
    assert (await handle.wait_response()).type == 5  # deferred: the clip is fetched and checked first
    audio = await handle.wait_file()
    assert round(audio_info(audio.data).duration_s) == 6
    [prediction] = fake.predictions.values()
    sent = prediction.input["input_audio"]
    assert sent.startswith(("data:audio/", fake.base_url + "/files/"))  # never a Discord CDN URL
    assert prediction.input["model_version"] == "stereo-melody-large"
    await handle.wait_original(status_is("Done"))


@pytest.mark.parametrize(
    ("upload", "message"),
    [
        (SimFile("notes.txt", b"not audio", "text/plain"), "isn't an audio file"),
        (SimFile("broken.mp3", b"\x00\x01garbage" * 100, "audio/mpeg"), "couldn't read that file as audio"),
        (SimFile("silence.wav", b"", "audio/wav"), "couldn't read that file as audio"),
    ],
)
async def test_melody_refuses_bad_clips(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate, upload: SimFile, message: str
) -> None:
    await encore.start()
    handle = await sim.user("alice").slash("music melody", audio=upload, prompt="x")
    reply = await handle.wait_message(lambda m: message in m.content)
    assert message in reply.content
    assert fake.predictions == {}


async def test_models_lists_every_setting(encore: Encore, sim: DiscordSimulator) -> None:
    await encore.start()
    reply = await (await sim.user("alice").slash("music models")).wait_original()
    assert reply.is_ephemeral
    text = "\n".join(embed.get("description", "") for embed in reply.embeds)
    for name in ("classifier_free_guidance", "sampler_type", "seed_image_id", "normalization_strategy"):
        assert f"`{name}`" in text
    one = await (await sim.user("alice").slash("music models", model="riffusion")).wait_original()
    assert [embed["title"] for embed in one.embeds] == ["Riffusion"]


@pytest.fixture
async def cog() -> AsyncIterator[FakeCog]:
    async with FakeCog(auto_complete=True) as server:
        yield server


async def test_generate_on_a_self_hosted_cog_server(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate, cog: FakeCog
) -> None:
    use_cog(encore, cog)
    await encore.start()
    handle = await sim.user("alice").slash("music generate", prompt="my own gpu", duration=2)
    audio = await handle.wait_file()
    assert round(audio_info(audio.data).duration_s) == 2
    assert fake.count("POST") == 0
    assert len(cog.uploads) == 1
    assert "Done" in card_status(await handle.wait_original(status_is("Done")))


async def test_melody_with_continuation_continues_the_clip(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    await encore.start()
    clip = make_wav(3, sample_rate=32000, channels=2, freq_hz=330.0)
    values = {
        "audio": SimFile("riff.wav", clip, "audio/wav"),
        "prompt": "keep going",
        "duration": 8,
        "options": "continuation=true",
    }
    handle = await sim.user("alice").slash("music melody", options=values)
    audio = await handle.wait_file()
    assert round(audio_info(audio.data).duration_s) == 8  # the total, clip included
    assert decode_pcm(audio.data, sample_rate=32000, channels=2).data.startswith(
        decode_pcm(clip, sample_rate=32000, channels=2).data
    )  # the track starts with the clip itself


async def test_melody_needs_a_melody_model(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    await encore.start()
    values = {"audio": SimFile("hum.wav", make_wav(2), "audio/wav"), "prompt": "x", "model_version": "large"}
    handle = await sim.user("alice").slash("music melody", options=values)
    reply = await handle.wait_message(lambda m: "needs a melody model" in m.content)
    assert "melody-large" in reply.content
    assert fake.predictions == {}
