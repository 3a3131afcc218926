"""Retention: old files and webhook ids go, files a job still needs stay, Cog uploads are capped.

The jobs run for real through the core and the fake Replicate or Cog; then time passes (the janitor's clock
moves on, the files' times are set back, as they would be on a disk where the bot ran for a month).
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.jobs.phase import Phase
from bot.jobs.retention import DAY_S, Janitor
from bot.records import JobStatus
from tests.fakes.audio import make_wav
from tests.fakes.cog import FakeCog
from tests.fakes.replicate import FakeReplicate
from tests.integration.conftest import Harness
from tests.integration.test_cog import start as start_on_cog


@pytest.fixture
async def cog() -> AsyncIterator[FakeCog]:
    async with FakeCog() as server:
        yield server


def age(path: Path, days: float) -> None:
    """Make ``path`` look as if it was written ``days`` ago."""
    then = time.time() - days * DAY_S
    os.utime(path, (then, then))


async def deliver(harness: Harness, fake: FakeReplicate, prompt: str) -> tuple[str, Path]:
    job = await harness.submit(prompt, duration_s=2)
    await fake.succeed(await fake.wait_for_prediction())
    assert await harness.listener.wait_for_phase(job.id) == Phase.DONE
    done = await harness.job(job.id)
    assert done.output_path is not None
    return job.id, Path(done.output_path)


def janitor(harness: Harness, *, days_later: float) -> Janitor:
    assert harness.core is not None
    assert harness.settings is not None
    return Janitor(harness.core.repo, harness.settings.storage, clock=lambda: time.time() + days_later * DAY_S)


async def test_files_go_after_the_retention_period_unless_a_job_still_needs_them(
    harness: Harness, fake: FakeReplicate
) -> None:
    await harness.start(storage={"keep_files_days": 30})
    assert harness.core is not None
    assert harness.settings is not None
    old_job, old_track = await deliver(harness, fake, "made long ago")
    _, recent_track = await deliver(harness, fake, "made yesterday")
    # The first job was made 40 days before the clean-up; the second one day before it.
    await harness.core.db.write("UPDATE jobs SET created_at = created_at - ? WHERE id = ?", (39 * DAY_S, old_job))
    # An unfinished job whose clip was handed in long ago (the model is still busy with it).
    clip = harness.settings.storage.inputs_dir / "clip.wav"
    clip.parent.mkdir(parents=True, exist_ok=True)
    clip.write_bytes(make_wav(1.0))
    waiting = await harness.submit("still running", duration_s=2, files={"input_audio": str(clip)})
    await fake.wait_for_prediction()
    # Leftovers no job names: an old one (a crash between download and insert) and one being written now.
    stray_old = harness.settings.storage.inputs_dir / "stray-old.mp3"
    stray_new = harness.settings.storage.inputs_dir / "stray-new.mp3"
    for stray in (stray_old, stray_new):
        stray.write_bytes(b"ID3 leftover")
    for path in (old_track, recent_track, clip, stray_old):
        age(path, 40)

    swept = await janitor(harness, days_later=1).sweep()

    assert not old_track.exists()
    assert not stray_old.exists()
    assert recent_track.exists()  # its job is a day old: Extend and Full track still work on it
    assert clip.exists()  # its job is not finished
    assert stray_new.exists()  # written in the last hour: maybe a job's file about to be recorded
    assert swept.files == 2
    assert (await harness.job(waiting.id)).status in (JobStatus.SUBMITTED, JobStatus.RUNNING)


async def test_keep_files_days_zero_keeps_everything(harness: Harness, fake: FakeReplicate) -> None:
    await harness.start(storage={"keep_files_days": 0})
    _, track = await deliver(harness, fake, "keep me")
    age(track, 4000)
    swept = await janitor(harness, days_later=4000).sweep()
    assert track.exists()
    assert swept.files == 0


async def test_webhook_ids_are_forgotten_after_a_day(harness: Harness) -> None:
    await harness.start()
    repo = harness.service.repo
    now = time.time()
    assert await repo.remember_webhook("msg_old", now=now - 2 * DAY_S)
    assert await repo.remember_webhook("msg_new", now=now - 60)
    swept = await janitor(harness, days_later=0).sweep()
    assert swept.webhook_ids == 1
    assert await repo.remember_webhook("msg_old")  # forgotten: counted as new
    assert not await repo.remember_webhook("msg_new")  # still a redelivery


async def test_the_bot_runs_the_clean_up_and_the_cli_does_not(harness: Harness, fake: FakeReplicate) -> None:
    await harness.start()
    assert harness.core is not None
    assert harness.core.janitor is not None
    await harness.core.stop_service()
    assert harness.core.janitor is None
    await harness.core.start_service(harness.listener, resume=False)  # how the CLI starts
    assert harness.core.janitor is None


async def test_a_prediction_cannot_upload_without_limit(harness: Harness, cog: FakeCog) -> None:
    upload_url = await start_on_cog(harness, cog, cog_settings={"max_uploads_per_prediction": 3})
    await harness.submit()
    key = await cog.wait_for_prediction()
    headers = {"X-Prediction-ID": key}
    async with aiohttp.ClientSession() as session:
        for n in range(3):
            async with session.put(f"{upload_url}out{n}.wav", data=b"RIFF", headers=headers) as response:
                assert response.status == 201
        async with session.put(f"{upload_url}out3.wav", data=b"RIFF", headers=headers) as response:
            assert response.status == 413
            assert "at most 3 files" in (await response.json())["error"]
        # The same name again replaces its file: a retried upload still works.
        async with session.put(f"{upload_url}out1.wav", data=b"RIFF2", headers=headers) as response:
            assert response.status == 201
    assert harness.settings is not None
    folder = harness.settings.storage.dir / "uploads" / key
    assert sorted(p.name for p in folder.iterdir()) == ["out0.wav", "out1.wav", "out2.wav"]


async def test_uploads_no_job_took_are_deleted_after_an_hour(harness: Harness, cog: FakeCog) -> None:
    upload_url = await start_on_cog(harness, cog)
    job = await harness.submit()
    key = await cog.wait_for_prediction()
    headers = {"X-Prediction-ID": key}
    async with aiohttp.ClientSession() as s, s.put(upload_url + "x.wav", data=b"RIFF", headers=headers) as r:
        assert r.status == 201
    assert harness.settings is not None
    assert harness.core is not None
    extra = harness.settings.storage.dir / "uploads" / key / "x.wav"
    age(extra, 1)
    sweeper = Janitor(
        harness.core.repo,
        harness.settings.storage,
        uploads_dirs=[harness.settings.storage.dir / "uploads"],
        expects_upload=harness.service.expects_upload,
    )
    await sweeper.sweep()
    assert extra.exists()  # the job is still running: its files may still be taken
    await cog.complete(key)
    assert await harness.listener.wait_for_phase(job.id) == Phase.DONE
    await sweeper.sweep()
    assert not extra.exists()
    assert not extra.parent.exists()
