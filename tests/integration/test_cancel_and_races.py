"""Canceling, and the races between users, webhooks and the poller."""

from __future__ import annotations

import asyncio

import pytest

from bot.errors import JobNotFoundError, JobStateError, NotAllowedError
from bot.jobs.access import MODERATOR, Person
from bot.jobs.phase import Phase
from bot.records import JobStatus
from tests.fakes.replicate import FakeReplicate
from tests.integration.conftest import Harness

# The job flows run on both storage backends (tests/conftest.py).
pytestmark = pytest.mark.both_backends


async def test_requester_cancels_a_running_job(harness: Harness, fake: FakeReplicate) -> None:
    await harness.start()
    job = await harness.submit()
    pid = await fake.wait_for_prediction()
    await fake.begin(pid)
    await harness.listener.wait_for_phase(job.id, Phase.GENERATING)
    canceled = await harness.service.cancel(job.id, Person(42))
    assert canceled.status == JobStatus.CANCELED
    assert canceled.error == "Canceled by the requester."
    assert fake.prediction(pid).status == "canceled"
    assert await harness.listener.wait_for_phase(job.id) == Phase.CANCELED
    assert harness.listener.delivered == []


async def test_others_may_not_cancel_but_moderators_may(harness: Harness, fake: FakeReplicate) -> None:
    await harness.start()
    job = await harness.submit(user_id=42)
    await fake.wait_for_prediction()
    with pytest.raises(NotAllowedError) as refused:
        await harness.service.cancel(job.id, Person(7))
    assert "Only the person who asked" in refused.value.user_message
    assert (await harness.job(job.id)).status != JobStatus.CANCELED
    canceled = await harness.service.cancel(job.id, Person(7, everywhere=MODERATOR))
    assert canceled.error == "Canceled by a moderator."


async def test_cancel_of_a_finished_or_unknown_job_is_refused(harness: Harness, fake: FakeReplicate) -> None:
    fake.auto_advance = True
    await harness.start()
    job = await harness.submit()
    await harness.listener.wait_for_phase(job.id, Phase.DONE)
    with pytest.raises(JobStateError, match="already finished"):
        await harness.service.cancel(job.id, Person(42))
    with pytest.raises(JobNotFoundError):
        await harness.service.cancel("nosuchjob", Person(42))


async def test_cancel_while_the_create_is_in_flight_cancels_upstream(harness: Harness, fake: FakeReplicate) -> None:
    fake.inject(method="POST", path="^/v1/predictions$", status=None, delay_s=0.3)
    await harness.start()
    job = await harness.submit()
    await fake.next_request("POST", "/v1/predictions")  # the create has reached the fake, not answered yet
    await harness.service.cancel(job.id, Person(42))
    pid = await fake.wait_for_prediction()
    assert (await fake.wait_for_status(pid)).status == "canceled"
    assert (await harness.job(job.id)).status == JobStatus.CANCELED


@pytest.mark.parametrize("rounds", [range(8)])
async def test_cancel_racing_completion_has_one_outcome(harness: Harness, fake: FakeReplicate, rounds: range) -> None:
    await harness.start(with_webhooks=True)
    for _ in rounds:
        job = await harness.submit()
        pid = await fake.wait_for_prediction()
        await fake.begin(pid)

        async def cancel(job_id: str = job.id) -> str:
            try:
                await harness.service.cancel(job_id, Person(42))
            except JobStateError:
                return "refused"
            return "canceled"

        outcome, _ = await asyncio.gather(cancel(), fake.succeed(pid))
        final = await harness.listener.wait_for_phase(job.id)
        record = await harness.job(job.id)
        deliveries = harness.listener.deliveries_of(job.id)
        if outcome == "canceled":
            assert (final, record.status, deliveries) == (Phase.CANCELED, JobStatus.CANCELED, [])
            assert not (harness.data_dir / "outputs" / f"{job.id}.wav").exists()
        else:
            assert (final, record.status, len(deliveries)) == (Phase.DONE, JobStatus.DELIVERED, 1)


async def test_webhook_and_poller_racing_deliver_once(harness: Harness, fake: FakeReplicate) -> None:
    # Webhooks on and a tiny grace: both the webhook and the poller see every job finish.
    await harness.start(with_webhooks=True, jobs={"webhook_grace_s": 0.0})
    jobs = [await harness.submit(f"track {n}") for n in range(6)]
    pids = [await fake.wait_for_prediction() for _ in jobs]
    await asyncio.gather(*(fake.succeed(pid, duplicate_webhook=1) for pid in pids))
    for job in jobs:
        assert await harness.listener.wait_for_phase(job.id) == Phase.DONE
        assert len(harness.listener.deliveries_of(job.id)) == 1
