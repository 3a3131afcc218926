"""Every model and its outputs through the real core and the fake Replicate; batches; audio inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.jobs.access import Person
from bot.jobs.phase import Phase
from bot.providers.replicate import DATA_URL_MAX_BYTES
from bot.records import JobStatus
from tests.fakes.audio import audio_info, image_info, make_wav
from tests.fakes.replicate import FakeReplicate
from tests.integration.conftest import Harness


async def test_musicgen_mp3_output(harness: Harness, fake: FakeReplicate) -> None:
    fake.auto_advance = True
    await harness.start()
    job = await harness.submit(duration_s=4, params={"output_format": "mp3", "temperature": 0.7, "top_k": 100})
    assert await harness.listener.wait_for_phase(job.id) == Phase.DONE
    [delivered] = harness.listener.deliveries_of(job.id)
    info = audio_info(delivered.data)
    assert info.codec.startswith("mp3")  # PyAV's decoder is called "mp3float"
    assert round(info.duration_s) == 4
    assert delivered.content_type == "audio/mpeg"
    sent = next(iter(fake.predictions.values())).input
    assert (sent["output_format"], sent["temperature"], sent["top_k"]) == ("mp3", 0.7, 100)


async def test_stable_audio(harness: Harness, fake: FakeReplicate) -> None:
    fake.auto_advance = True
    await harness.start()
    job = await harness.submit(model="stable-audio", duration_s=12, seed=9, params={"steps": 40, "cfg_scale": 7.5})
    assert await harness.listener.wait_for_phase(job.id) == Phase.DONE
    [delivered] = harness.listener.deliveries_of(job.id)
    info = audio_info(delivered.data)
    assert (round(info.duration_s), info.sample_rate, info.channels) == (12, 44100, 2)
    [prediction] = fake.predictions.values()
    assert prediction.version == "9aff84a639f96d0f7e6081cdea002d15133d0043727f849c40abdd166b7c75a8"
    assert (prediction.input["seconds_total"], prediction.input["seed"], prediction.input["steps"]) == (12, 9, 40)
    assert (await harness.job(job.id)).seed == 9


async def test_riffusion_delivers_audio_and_spectrogram(harness: Harness, fake: FakeReplicate) -> None:
    fake.auto_advance = True
    await harness.start()
    job = await harness.submit(
        "church bells",
        model="riffusion",
        params={"prompt_b": "electronic beats", "alpha": 0.3, "seed_image_id": "og_beat"},
    )
    assert await harness.listener.wait_for_phase(job.id) == Phase.DONE
    [delivered] = harness.listener.deliveries_of(job.id)
    assert round(audio_info(delivered.data).duration_s) == 5
    assert delivered.image is not None
    assert image_info(delivered.image).codec == "mjpeg"
    [prediction] = fake.predictions.values()
    assert prediction.input["prompt_a"] == "church bells"
    assert "seed" not in prediction.input


async def test_batch_is_delivered_together_each_with_its_seed(harness: Harness, fake: FakeReplicate) -> None:
    fake.auto_advance = True
    await harness.start()
    jobs = await harness.submit_all("three takes", count=3, seed=100, duration_s=2)
    assert [job.batch_index for job in jobs] == [0, 1, 2]
    assert len({job.batch_id for job in jobs}) == 1
    assert await harness.listener.wait_for_phase(jobs[0].card_key) == Phase.DONE
    assert harness.listener.messages == [[job.id for job in jobs]]  # one message with every variation
    seeds = sorted(prediction.input["seed"] for prediction in fake.predictions.values())
    assert seeds == [100, 101, 102]
    for job in jobs:
        record = await harness.job(job.id)
        assert (record.status, record.seed) == (JobStatus.DELIVERED, 100 + job.batch_index)


async def test_batch_with_a_failed_variation_delivers_the_rest(harness: Harness, fake: FakeReplicate) -> None:
    await harness.start()
    jobs = await harness.submit_all("two takes", count=2)
    first, second = await fake.wait_for_prediction(), await fake.wait_for_prediction()
    await fake.fail(first)
    await fake.succeed(second)
    assert await harness.listener.wait_for_phase(jobs[0].card_key) == Phase.DONE
    assert len(harness.listener.messages) == 1
    assert len(harness.listener.messages[0]) == 1
    statuses = sorted([(await harness.job(job.id)).status for job in jobs])
    assert statuses == sorted([JobStatus.DELIVERED, JobStatus.FAILED])


async def test_canceling_a_batch_cancels_every_variation(harness: Harness, fake: FakeReplicate) -> None:
    await harness.start()
    jobs = await harness.submit_all("four takes", count=4)
    pids = [await fake.wait_for_prediction() for _ in jobs]
    await harness.service.cancel(jobs[0].id, Person(42))
    for pid in pids:
        assert (await fake.wait_for_status(pid)).status == "canceled"
    assert await harness.listener.wait_for_phase(jobs[0].card_key) == Phase.CANCELED


@pytest.mark.parametrize("seconds", [1, 12])  # a small clip goes inline; a large one via the files API
async def test_melody_clip_reaches_the_model(
    harness: Harness, fake: FakeReplicate, tmp_path: Path, seconds: int
) -> None:
    clip = tmp_path / "hum.wav"
    clip.write_bytes(make_wav(seconds, sample_rate=16000, channels=1))
    fake.auto_advance = True
    await harness.start()
    job = await harness.submit("orchestral", duration_s=6, files={"input_audio": str(clip)})
    assert await harness.listener.wait_for_phase(job.id) == Phase.DONE
    [prediction] = fake.predictions.values()
    sent = prediction.input["input_audio"]
    if clip.stat().st_size <= DATA_URL_MAX_BYTES:
        assert sent.startswith("data:audio/")
    else:
        assert sent.startswith(fake.base_url + "/files/")
        assert len(fake.files) == 1
    [delivered] = harness.listener.deliveries_of(job.id)
    assert round(audio_info(delivered.data).duration_s) == 6
