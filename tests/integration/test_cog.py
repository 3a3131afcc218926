"""MusicGen on a self-hosted Cog server: the real core against the fake Cog, webhooks and uploads included."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.errors import NO_UPLOAD_TARGET
from bot.jobs.access import Person
from bot.jobs.phase import Phase
from bot.jobs.progress import progress_text
from bot.records import JobStatus
from tests.fakes.audio import audio_info, make_mp3, make_wav
from tests.fakes.cog import FakeCog
from tests.fakes.models import OutputFile
from tests.fakes.replicate import FakeReplicate, tqdm_line
from tests.integration.conftest import Harness

SECRET = "upload-secret-0123456789"


@pytest.fixture
async def cog() -> AsyncIterator[FakeCog]:
    async with FakeCog() as server:
        yield server


async def start(
    harness: Harness,
    cog: FakeCog,
    *,
    upload: bool = True,
    cog_settings: dict[str, object] | None = None,
    **sections: dict[str, object],
) -> str:
    """Route MusicGen to the fake Cog server; returns the upload URL Cog is started with."""
    harness.configure(
        with_webhooks=True,
        models={"musicgen": {"provider": "cog"}},
        cog={"base_url": cog.base_url, "upload_secret": SECRET, "retry_s": 0.02, **(cog_settings or {})},
        **sections,
    )
    await harness.start()
    assert harness.settings is not None
    upload_url = f"{harness.settings.webhooks.public_url}cog/uploads/{SECRET}/"
    cog.upload_url = upload_url if upload else None
    return upload_url


async def test_job_runs_on_cog_with_uploaded_output(harness: Harness, cog: FakeCog, fake: FakeReplicate) -> None:
    await start(harness, cog)
    job = await harness.submit("lofi on my own gpu", duration_s=3, seed=77)
    key = await cog.wait_for_prediction()
    created = await cog.next_request("PUT", "/predictions/")
    assert created.headers["Prefer"] == "respond-async"
    assert created.json is not None
    assert created.json["webhook"].endswith(f"/cog/webhooks/{job.id}/{(await harness.job(job.id)).callback_token}")
    assert created.json["input"]["seed"] == 77
    assert "version" not in created.json
    await cog.complete(key)
    assert await harness.listener.wait_for_phase(job.id) == Phase.DONE
    [delivered] = harness.listener.deliveries_of(job.id)
    assert round(audio_info(delivered.data).duration_s) == 3
    [upload] = cog.uploads
    assert (upload.status_code, upload.prediction_id) == (201, key)
    assert fake.count("POST") == 0  # no prediction on Replicate (only its webhook secret, for other models)


async def test_busy_server_makes_jobs_wait_never_fail(harness: Harness, cog: FakeCog) -> None:
    await start(harness, cog)
    first, second = await harness.submit("first"), await harness.submit("second")
    key = await cog.wait_for_prediction()
    await cog.next_request("GET", "/health-check")
    assert (await harness.job(second.id if key.startswith(first.id) else first.id)).status == JobStatus.QUEUED
    await cog.complete(key)
    other = await cog.wait_for_prediction()
    await cog.complete(other)
    for job in (first, second):
        assert await harness.listener.wait_for_phase(job.id) == Phase.DONE


async def test_server_still_setting_up(harness: Harness) -> None:
    async with FakeCog(setup_done=False) as starting:
        await start(harness, starting)
        job = await harness.submit()
        await starting.next_request("GET", "/health-check")
        await starting.next_request("GET", "/health-check")  # asked again, still waiting
        assert (await harness.job(job.id)).status == JobStatus.QUEUED
        starting.finish_setup()
        await starting.complete(await starting.wait_for_prediction())
        assert await harness.listener.wait_for_phase(job.id) == Phase.DONE


async def test_unordered_and_repeated_webhooks(harness: Harness, cog: FakeCog) -> None:
    cog.reorder_webhooks = True
    await start(harness, cog)
    job = await harness.submit()
    await cog.complete(await cog.wait_for_prediction())
    await cog.drain_webhooks()
    assert await harness.listener.wait_for_phase(job.id) == Phase.DONE
    assert len(harness.listener.deliveries_of(job.id)) == 1


async def test_forged_webhooks_and_uploads_are_refused(harness: Harness, cog: FakeCog) -> None:
    upload_url = await start(harness, cog)
    job = await harness.submit()
    key = await cog.wait_for_prediction()
    assert harness.settings is not None
    public = str(harness.settings.webhooks.public_url)
    async with aiohttp.ClientSession() as session:
        body = {"id": key, "status": "succeeded", "output": "data:audio/wav;base64,AAAA"}
        async with session.post(f"{public}cog/webhooks/{job.id}/not-the-token", json=body) as response:
            assert response.status == 401
        async with session.put(f"{public}cog/uploads/wrong-secret/out.wav", data=b"x") as response:
            assert response.status == 403
        headers = {"X-Prediction-ID": "nobodys-prediction"}
        async with session.put(upload_url + "out.wav", data=b"x", headers=headers) as response:
            assert response.status == 404
        headers = {"X-Prediction-ID": "../../etc"}
        async with session.put(upload_url + "out.wav", data=b"x", headers=headers) as response:
            assert response.status == 400
    assert (await harness.job(job.id)).status in (JobStatus.SUBMITTED, JobStatus.RUNNING)
    assert harness.listener.delivered == []


async def test_server_without_upload_target_is_explained(harness: Harness, cog: FakeCog) -> None:
    await start(harness, cog, upload=False)
    job = await harness.submit()
    await cog.complete(await cog.wait_for_prediction())
    assert await harness.listener.wait_for_phase(job.id) == Phase.FAILED
    assert (await harness.job(job.id)).error == NO_UPLOAD_TARGET


async def test_cancel_reaches_the_cog_server(harness: Harness, cog: FakeCog) -> None:
    await start(harness, cog)
    job = await harness.submit()
    key = await cog.wait_for_prediction()
    await harness.service.cancel(job.id, Person(42))
    assert (await cog.wait_for_status(key, "canceled")).status == "canceled"
    assert await harness.listener.wait_for_phase(job.id) == Phase.CANCELED


async def test_lost_prediction_is_run_again(harness: Harness, cog: FakeCog) -> None:
    cog.webhook_retries = 0
    await start(harness, cog, cog_settings={"lost_after_s": 0.05}, jobs={"poll_initial_s": 0.02, "poll_max_s": 0.05})
    job = await harness.submit()
    first = await cog.wait_for_prediction()
    assert harness.core is not None
    assert harness.core.web is not None
    await harness.core.web.stop()  # Encore unreachable: the run's upload and webhooks are lost
    await cog.complete(first)
    await cog.drain_webhooks()
    await harness.core.web.start()
    cog.auto_complete = True
    assert await harness.listener.wait_for_phase(job.id, timeout=20) == Phase.DONE
    second = (await harness.job(job.id)).prediction_id
    assert second is not None
    assert second != first
    assert len(harness.listener.deliveries_of(job.id)) == 1


async def test_cog_requires_a_public_url(harness: Harness, cog: FakeCog, tmp_path: Path) -> None:
    from bot.app import Core
    from bot.errors import ConfigError

    settings = harness.configure(models={"musicgen": {"provider": "cog"}}, cog={"base_url": cog.base_url})
    with pytest.raises(ConfigError, match="public_url"):
        await Core(settings, harness.secrets).open()
    await asyncio.sleep(0)


async def test_inline_data_url_output_is_taken_too(harness: Harness, cog: FakeCog) -> None:
    # Cog returns files inline as data URLs when it uploads nothing (sync runs, some server builds).
    await start(harness, cog)
    job = await harness.submit(duration_s=2)
    key = await cog.wait_for_prediction()
    wav = make_wav(2, sample_rate=32000, channels=2)
    await cog.complete(key, output="data:audio/x-wav;base64," + base64.b64encode(wav).decode())
    assert await harness.listener.wait_for_phase(job.id) == Phase.DONE
    [delivered] = harness.listener.deliveries_of(job.id)
    assert delivered.data == wav


async def test_replicate_stems_need_a_pinned_demucs_version(harness: Harness) -> None:
    from bot.app import Core
    from bot.errors import ConfigError

    settings = harness.configure(stems={"provider": "replicate"})
    with pytest.raises(ConfigError, match=r"\[stems\] demucs_ref: set a pinned version id"):
        await Core(settings, harness.secrets).open()


async def test_inline_output_that_is_not_audio_fails_the_job(harness: Harness, cog: FakeCog) -> None:
    await start(harness, cog)
    job = await harness.submit(duration_s=2)
    key = await cog.wait_for_prediction()
    page = b"<html><body>Internal Server Error</body></html>"
    await cog.complete(key, output="data:audio/wav;base64," + base64.b64encode(page).decode())
    assert await harness.listener.wait_for_phase(job.id) == Phase.FAILED
    failed = await harness.job(job.id)
    assert failed.error is not None
    assert "isn't audio" in failed.error
    assert harness.listener.delivered == []
    assert not list(harness.service.outputs_dir.glob(f"{job.id}*"))  # nothing of it is kept


async def test_uploaded_output_is_named_for_what_it_is(harness: Harness, cog: FakeCog) -> None:
    await start(harness, cog)
    job = await harness.submit(duration_s=2)
    key = await cog.wait_for_prediction()
    mp3 = make_mp3(2)
    await cog.complete(key, output=OutputFile("output.wav", mp3, "audio/wav"))  # an MP3 that says it is a WAV
    assert await harness.listener.wait_for_phase(job.id) == Phase.DONE
    done = await harness.job(job.id)
    assert done.output_path is not None
    assert done.output_path.endswith(".mp3")
    assert done.output_content_type == "audio/mpeg"
    [delivered] = harness.listener.deliveries_of(job.id)
    assert delivered.data == mp3


async def test_uploaded_executable_fails_the_job(harness: Harness, cog: FakeCog) -> None:
    await start(harness, cog)
    job = await harness.submit(duration_s=2)
    key = await cog.wait_for_prediction()
    elf = b"\x7fELF\x02\x01\x01\x00" + bytes(2000)
    await cog.complete(key, output=OutputFile("output.mp3", elf, "audio/mpeg"))
    assert await harness.listener.wait_for_phase(job.id) == Phase.FAILED
    assert "isn't audio" in ((await harness.job(job.id)).error or "")
    assert harness.listener.delivered == []


async def test_a_cog_servers_progress_reaches_the_card_by_its_logs_webhooks(harness: Harness, cog: FakeCog) -> None:
    await start(harness, cog)
    job = await harness.submit("progress on my own gpu", duration_s=3)
    key = await cog.wait_for_prediction()
    created = await cog.next_request("PUT", "/predictions/")
    assert created.json is not None
    assert created.json["webhook_events_filter"] == ["start", "logs", "completed"]
    await cog.log(key, "Using seed 5\n\r" + tqdm_line(780, 1503, 15.4, 50.6))  # as the model's tqdm prints it
    shown = await harness.listener.wait_for_progress(job.id, 0.5)
    assert progress_text(shown).startswith("▓▓▓▓▓░░░░░ 52% · about ")
    await cog.complete(key)
    assert await harness.listener.wait_for_phase(job.id) == Phase.DONE
