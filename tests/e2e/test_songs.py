"""ElevenLabs Music through Discord: songs with metadata, seeds via plans, errors, cancel and restarts."""

from __future__ import annotations

import pytest

from bot.catalog import SONG_FORMATS
from bot.providers.elevenlabs_api import ElevenLabsSettings
from tests.e2e.conftest import (
    Encore,
    card_field,
    card_status,
    configure_as_shipped,
    job_id_of,
    status_is,
    use_elevenlabs,
)
from tests.fakes.audio import audio_info, make_wav
from tests.fakes.discord import DiscordSimulator, SimFile
from tests.fakes.elevenlabs import MODEL_IDS, FakeElevenLabs, plan_length_ms, plan_lyrics, plan_negative_styles


async def test_song_with_metadata(encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs) -> None:
    await encore.start()
    handle = await sim.user("alice").slash("music song", prompt="a sea shanty about debugging", length=6)
    audio = await handle.wait_file()
    info = audio_info(audio.data)
    assert info.codec.startswith("mp3")
    assert round(info.duration_s) == 6
    [generation] = eleven.generations
    assert (generation.endpoint, generation.music_length_ms, generation.model_id) == (
        "detailed",
        6000,
        "music_v1",
    )
    title = generation.metadata["title"]
    card = await handle.wait_original(status_is("Done"))
    assert card.embeds[0]["title"] == title
    assert card_field(card, "Genres") == ", ".join(generation.metadata["genres"])
    assert card_field(card, "Explicit") in ("yes", "no")
    slug = "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-")
    assert audio.filename.startswith(slug.split("-")[0])  # named after the song's title


async def test_a_two_minute_song_with_the_shipped_config(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs
) -> None:
    configure_as_shipped(encore)
    await encore.start()
    handle = await sim.user("alice").slash("music song", prompt="a slow ballad about the sea", length=120)
    card = await handle.wait_original(lambda m: bool(m.embeds))  # a job card, not a refusal
    assert job_id_of(card)
    # Two minutes of audio is real work for the fake and for fitting: a generous bound, not a sleep.
    audio = await handle.wait_file(timeout_s=60)
    assert round(audio_info(audio.data).duration_s) == 120
    [generation] = eleven.generations
    assert (generation.music_length_ms, generation.length_ms) == (120_000, 120_000)


async def test_an_operator_cap_on_length_is_explained(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs
) -> None:
    encore.configure(jobs={"max_duration_s": 60})
    await encore.start()
    refusal = await (await sim.user("alice").slash("music song", prompt="a long one", length=120)).wait_original()
    assert "between 3 and 60 seconds" in refusal.content
    assert "this bot's limit" in refusal.content
    assert eleven.requests == []


@pytest.mark.parametrize("model_id", MODEL_IDS)
async def test_seed_and_instrumental_go_through_a_plan(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs, model_id: str
) -> None:
    encore.configure(elevenlabs={"model_id": model_id})
    await encore.start()
    handle = await sim.user("alice").slash(
        "music song", prompt="lofi study beats", length=24, seed=77, instrumental=True
    )
    await handle.wait_file()
    [planned] = eleven.plans  # planned first (free), because a seed only goes with a plan
    assert plan_lyrics(planned.plan)  # the plan came with lyrics...
    [generation] = eleven.generations
    assert (generation.seed, generation.model_id) == (77, model_id)
    assert generation.composition_plan is not None
    assert plan_lyrics(generation.composition_plan) == []  # ...and the song was composed without any
    assert plan_length_ms(generation.composition_plan) == 24_000
    assert "vocals" in plan_negative_styles(generation.composition_plan)


async def test_instrumental_without_a_seed_is_forced(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs
) -> None:
    await encore.start()
    await (await sim.user("alice").slash("music song", prompt="a jazzy tune", length=24, instrumental=True)).wait_file()
    [generation] = eleven.generations
    assert (generation.prompt, generation.force_instrumental) == ("a jazzy tune", True)
    assert plan_lyrics(generation.plan) == []


async def test_refused_prompt_shows_the_suggestion(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs
) -> None:
    eleven.inject("bad_prompt", suggestion="an upbeat pop song about summer")
    await encore.start()
    handle = await sim.user("alice").slash("music song", prompt="a song like a famous band")
    card = await handle.wait_original(status_is("Failed"))
    assert "won't make that prompt" in card_status(card)
    assert card_field(card, "Try this prompt") == "an upbeat pop song about summer"
    assert card.custom_ids() == [f"encore:retry:{job_id_of(card)}"]


async def test_credits_and_quota_are_explained(encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs) -> None:
    await encore.start()
    for error in (402, "quota_exceeded"):
        eleven.inject(error)
        handle = await sim.user("alice").slash("music song", prompt="anything")
        card = await handle.wait_original(status_is("Failed"))
        assert "credits are used up" in card_status(card)


async def test_rate_limits_are_retried(encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs) -> None:
    eleven.inject("concurrent_limit_exceeded", retry_after=0, times=2)
    await encore.start()
    handle = await sim.user("alice").slash("music song", prompt="patience", length=3)
    await handle.wait_file()
    assert eleven.count("POST", "/v1/music/detailed") == 3


async def test_busy_for_too_long_fails_clearly(encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs) -> None:
    eleven.inject("system_busy", times=10)
    await encore.start()
    handle = await sim.user("alice").slash("music song", prompt="patience")
    card = await handle.wait_original(status_is("Failed"))
    assert "very busy" in card_status(card)


async def test_progress_then_cancel_aborts_the_call(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs
) -> None:
    hold = eleven.hold(path="/v1/music/detailed", after_chunks=2)
    await encore.start()
    # Raw PCM costs the fake no encoding (60 s of MP3 takes seconds on a loaded machine): 2 MB, in 4 pieces.
    handle = await sim.user("alice").slash("music song", prompt="a long ballad", length=24, format="pcm_44100")
    await hold.wait_held()
    card = await handle.wait_original(lambda m: "received" in card_status(m))  # progress by bytes
    assert "Generating" in card_status(card)
    await sim.user("alice").click(card, f"encore:cancel:{job_id_of(card)}")
    aborted = await eleven.next_abort()
    assert aborted is eleven.generations[0]
    assert aborted.aborted
    assert not aborted.completed
    assert "Canceled" in card_status(await handle.wait_original(status_is("Canceled")))


async def test_restart_during_a_song_asks_before_paying_again(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs
) -> None:
    hold = eleven.hold(path="/v1/music/detailed")
    await encore.start()
    handle = await sim.user("alice").slash("music song", prompt="an interrupted song", length=4)
    card = await handle.wait_original()
    await hold.wait_held()
    await encore.restart()
    failed = await sim.wait_for_edit(card.id, status_is("Failed"))
    assert "Interrupted" in card_status(failed)
    assert len(eleven.generations) == 1  # not run again by itself
    retry = await sim.user("alice").click(failed, f"encore:retry:{job_id_of(card)}")
    audio = await retry.wait_file()
    assert round(audio_info(audio.data).duration_s) == 4
    assert len(eleven.generations) == 2


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (401, "rejected Encore's API key"),
        (403, "doesn't include music"),
        (500, "ElevenLabs had a problem"),
        (503, "ElevenLabs had a problem"),
        ("rate_limit_exceeded", "rate limiting Encore"),
    ],
)
async def test_each_error_class_is_explained(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs, error: object, message: str
) -> None:
    eleven.inject(error, times=10)  # type: ignore[arg-type]
    await encore.start()
    card = await (await sim.user("alice").slash("music song", prompt="anything")).wait_original(status_is("Failed"))
    assert message in card_status(card)


async def test_validation_errors_name_the_setting(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs
) -> None:
    eleven.inject(
        422, body={"detail": [{"loc": ["body", "music_length_ms"], "msg": "too long", "type": "value_error"}]}
    )
    await encore.start()
    card = await (await sim.user("alice").slash("music song", prompt="x")).wait_original(status_is("Failed"))
    assert "ElevenLabs refused those settings (music_length_ms)." in card_status(card)


async def test_refused_plan_is_kept_as_a_suggestion(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs
) -> None:
    await encore.start()
    alice = sim.user("alice")
    plan_card = await (await alice.slash("music plan", prompt="a cover of a famous song")).wait_original(
        lambda m: bool(m.embeds)
    )
    eleven.inject("bad_composition_plan", path="/v1/music/detailed")
    plan_id = plan_card.embeds[0]["footer"]["text"].split()[1]
    compose = await alice.click(plan_card, f"encore:plancompose:{plan_id}")
    card = await compose.wait_original(status_is("Failed"))
    assert "won't compose that plan" in card_status(card)


def offered_formats(sim: DiscordSimulator) -> list[str]:
    """The `format:` choices /music song shows people, as synced to Discord."""
    _, options = sim.command("music", guild_id=sim.guilds[0].id).find_path(["song"])
    return [choice["value"] for choice in next(o for o in options if o["name"] == "format")["choices"]]


@pytest.mark.parametrize(("fmt", "pcm_channels"), [*((f, 1) for f in SONG_FORMATS), ("pcm_44100", 2)])
async def test_every_offered_format_delivers_playable_audio(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs, fmt: str, pcm_channels: int
) -> None:
    eleven.pcm_channels = pcm_channels  # ElevenLabs doesn't document PCM's channel count: both must work
    await encore.start()
    assert offered_formats(sim) == list(SONG_FORMATS)
    handle = await sim.user("alice").slash("music song", prompt="a bright little waltz", length=4, format=fmt)
    audio = await handle.wait_file()
    info = audio_info(audio.data)  # decodes, every frame
    assert round(info.duration_s, 1) == 4.0
    [generation] = eleven.generations
    assert generation.output_format == fmt
    if fmt.startswith("pcm_"):
        assert audio.filename.endswith(".wav")
        assert (info.codec, info.sample_rate, info.channels) == ("pcm_s16le", int(fmt.split("_")[1]), pcm_channels)
    await handle.wait_original(status_is("Done"))


async def test_a_pcm_default_format_is_delivered_as_wav(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs
) -> None:
    encore.configure(elevenlabs={"output_format": "pcm_24000"})
    await encore.start()
    audio = await (await sim.user("alice").slash("music song", prompt="a lullaby", length=3)).wait_file()
    info = audio_info(audio.data)
    assert (audio.filename[-4:], info.sample_rate, info.channels, round(info.duration_s, 1)) == (".wav", 24000, 1, 3.0)
    assert eleven.generations[0].output_format == "pcm_24000"


async def test_a_song_larger_than_encore_takes_fails_clearly_and_keeps_nothing(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs
) -> None:
    encore.configure(storage={"max_output_bytes": 8192})  # a 3 s song is about 50 KB
    await encore.start()
    handle = await sim.user("alice").slash("music song", prompt="a song too big to keep", length=3)
    card = await handle.wait_original(status_is("Failed"))
    assert "larger than Encore can take" in card_status(card)
    assert [eleven.generations[0].endpoint] == ["detailed"]  # it was made (and streamed) once, then refused
    assert list(encore.settings.storage.outputs_dir.iterdir()) == []  # no song, no partial file


async def test_the_song_id_header_is_read_in_any_case(encore: Encore, sim: DiscordSimulator) -> None:
    async with FakeElevenLabs(default_length_ms=5000, song_id_header="Song-ID") as eleven:
        use_elevenlabs(encore, eleven)
        await encore.start()
        handle = await sim.user("alice").slash("music song", prompt="a song to keep", length=3)
        await handle.wait_file()
        card = await handle.wait_original(status_is("Done"))
        [generation] = eleven.generations
        assert eleven.requests[-1].path == "/v1/music/detailed"
        assert encore.bot is not None
        job = await encore.bot.service.get(job_id_of(card))
        assert job.result["song_id"] == generation.song_id  # kept for editing and inpainting later
        await encore.stop()


async def test_an_api_base_with_a_path_keeps_it(encore: Encore, sim: DiscordSimulator) -> None:
    """ElevenLabs behind a proxy at http://proxy/elevenlabs: songs, plans and stems all go under that path."""
    async with FakeElevenLabs(default_length_ms=5000, prefix="/elevenlabs") as eleven:
        use_elevenlabs(encore, eleven)
        assert encore.settings.section("elevenlabs", ElevenLabsSettings).api_base.path == "/elevenlabs"
        await encore.start()
        alice = sim.user("alice")
        song = await alice.slash("music song", prompt="a song through a proxy", length=3)
        assert round(audio_info((await song.wait_file()).data).duration_s) == 3
        plan = await alice.slash("music plan", prompt="a plan through a proxy", length=6)
        await plan.wait_original(lambda m: bool(m.embeds) and m.embeds[0]["title"].startswith("Plan:"))
        stems = await alice.slash("music stems", audio=SimFile("band.wav", make_wav(3), "audio/wav"), stems="two")
        await stems.wait_message(lambda m: len(m.attachments) == 2)
        assert sorted(r.path for r in eleven.requests) == [
            "/elevenlabs/v1/music/detailed",
            "/elevenlabs/v1/music/plan",
            "/elevenlabs/v1/music/stem-separation",
        ]
        await encore.stop()
