"""A restart (or crash) loses no job and delivers none twice."""

from __future__ import annotations

import pytest

from bot.errors import DeliveryError
from bot.jobs.phase import Phase
from bot.records import JobStatus
from bot.storage.jobs_repo import JobsRepo
from tests.fakes.audio import wav_info
from tests.fakes.replicate import FakeReplicate
from tests.integration.conftest import Harness

# The job flows run on both storage backends (tests/conftest.py).
pytestmark = pytest.mark.both_backends


async def test_job_running_at_restart_is_delivered_once(harness: Harness, fake: FakeReplicate) -> None:
    await harness.start()
    job = await harness.submit(duration_s=4)
    pid = await fake.wait_for_prediction()
    await fake.begin(pid)
    await harness.listener.wait_for_phase(job.id, Phase.GENERATING)
    await harness.stop()
    await fake.succeed(pid)  # finishes while the bot is down
    await harness.start()
    assert await harness.listener.wait_for_phase(job.id) == Phase.DONE
    [delivered] = harness.listener.deliveries_of(job.id)
    assert round(wav_info(delivered.data).duration_s) == 4
    assert len(fake.predictions) == 1  # resumed, not resubmitted


async def test_job_finished_but_undelivered_at_restart_is_delivered_once(harness: Harness, fake: FakeReplicate) -> None:
    harness.listener.delivery_failures = [DeliveryError(detail="Discord is down")]
    await harness.start(jobs={"retry_s": 60.0})  # the retry would come long after the restart
    job = await harness.submit()
    pid = await fake.wait_for_prediction()
    await fake.succeed(pid)
    await harness.listener.wait_for_delivery_attempts(1)  # Discord failed; the retry is a minute away
    await harness.stop()
    async with harness.backend.opened(harness.data_dir / "encore.sqlite3") as db:
        stored = await JobsRepo(db).get(job.id)
    assert stored is not None
    assert (stored.status, stored.delivery_attempts) == (JobStatus.SUCCEEDED, 1)
    await harness.start()
    assert await harness.listener.wait_for_phase(job.id) == Phase.DONE
    assert len(harness.listener.deliveries_of(job.id)) == 1


async def test_create_lost_in_a_crash_is_found_not_repeated(harness: Harness, fake: FakeReplicate) -> None:
    # The create reaches Replicate but its answer is lost, and the bot stops before it looks for it.
    fake.inject(method="POST", path="^/v1/predictions$", drop_after_create=True)
    await harness.start(jobs={"retry_s": 60.0})  # the lookup would come long after the crash
    job = await harness.submit()
    pid = await fake.wait_for_prediction()
    await harness.stop()
    assert list(fake.predictions) == [pid]
    await harness.start()
    await fake.succeed(pid)
    assert await harness.listener.wait_for_phase(job.id) == Phase.DONE
    assert list(fake.predictions) == [pid]  # found by listing after the restart, never created twice
    assert (await harness.job(job.id)).prediction_id == pid


async def test_output_expired_before_resume_is_run_again(harness: Harness, fake: FakeReplicate) -> None:
    await harness.start()
    job = await harness.submit(duration_s=2)
    pid = await fake.wait_for_prediction()
    await harness.stop()
    await fake.succeed(pid)
    fake.expire_outputs(pid)  # resumed more than an hour later: Replicate deleted the output
    fake.auto_advance = True
    await harness.start()
    assert await harness.listener.wait_for_phase(job.id) == Phase.DONE
    assert len(fake.predictions) == 2
    record = await harness.job(job.id)
    assert record.prediction_id != pid
    [delivered] = harness.listener.deliveries_of(job.id)
    assert round(wav_info(delivered.data).duration_s) == 2
