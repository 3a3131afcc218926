"""Quotas, cooldowns, budgets and prompt rules through the real service: refusals store and charge nothing."""

from __future__ import annotations

import asyncio

import pytest

from bot.errors import InvalidRequestError, NotAllowedError
from bot.jobs.access import Person
from bot.jobs.limits import LimitError
from bot.jobs.phase import Phase
from bot.records import JobOrigin, JobRequest, JobStatus
from tests.fakes.replicate import FakeReplicate
from tests.integration.conftest import Harness

# The job flows run on both storage backends (tests/conftest.py).
pytestmark = pytest.mark.both_backends


async def start(harness: Harness, **limits: object) -> None:
    await harness.start(limits=limits)  # the rest stay off (tests/conftest.py NO_LIMITS)


async def test_two_requests_racing_for_the_last_slot(harness: Harness, fake: FakeReplicate) -> None:
    await start(harness, user_daily_jobs=3)
    await harness.submit("one")
    await harness.submit("two")
    results = await asyncio.gather(harness.submit("three"), harness.submit("four"), return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["Job", "LimitError"]
    refused = next(r for r in results if isinstance(r, LimitError))
    assert "You've made 3 of your 3 tracks today" in refused.user_message
    assert len(await harness.service.repo.list_for_user(42, limit=10)) == 3  # nothing stored for the refusal


async def test_failed_and_canceled_jobs_give_their_quota_back(harness: Harness, fake: FakeReplicate) -> None:
    await start(harness, user_daily_jobs=1)
    job = await harness.submit()
    with pytest.raises(LimitError):
        await harness.submit("again")
    pid = await fake.wait_for_prediction()
    await fake.fail(pid)
    await harness.listener.wait_for_phase(job.id, Phase.FAILED)
    second = await harness.submit("again")  # the failed one didn't count
    await harness.service.cancel(second.id, Person(42))
    await harness.submit("third time")


async def test_requests_in_flight_and_cooldown(harness: Harness, fake: FakeReplicate) -> None:
    await start(harness, user_jobs_in_flight=1)
    await harness.submit(count=3)  # a batch is one request
    with pytest.raises(LimitError, match="1 request\\(s\\) in progress"):
        await harness.submit()
    await harness.submit(user_id=7)  # others aren't affected
    await harness.stop()
    await start(harness, user_cooldown_s=3600)
    await harness.submit(user_id=8)
    with pytest.raises(LimitError, match="Please wait 3600 more second"):
        await harness.submit(user_id=8)


async def test_seconds_of_audio_per_day(harness: Harness, fake: FakeReplicate) -> None:
    await start(harness, user_daily_audio_s=20, guild_daily_audio_s=40)
    await harness.submit(duration_s=15)
    with pytest.raises(LimitError, match=r"more music than you have left today \(5 s\)"):
        await harness.submit(duration_s=10)
    await harness.submit(duration_s=20, user_id=9)
    with pytest.raises(LimitError, match="This server has used today's music time"):
        await harness.submit(duration_s=10, user_id=10)


async def test_budgets(harness: Harness, fake: FakeReplicate) -> None:
    # MusicGen is estimated at $0.0023 per output second: 30 s is $0.069.
    await start(harness, guild_daily_budget_usd=0.1, daily_budget_usd=0.15)
    await harness.submit(duration_s=30)
    with pytest.raises(LimitError, match="This server's budget for today is spent"):
        await harness.submit(duration_s=30)
    dm = JobOrigin(user_id=5, guild_id=None, channel_id=3)
    await harness.service.create(JobRequest(prompt="dm track", duration_s=30), dm)  # no guild budget in DMs
    with pytest.raises(LimitError, match="Encore's budget for today is spent"):
        await harness.service.create(JobRequest(prompt="dm track", duration_s=30), dm)


async def test_actual_cost_replaces_the_estimate(harness: Harness, fake: FakeReplicate) -> None:
    fake.auto_advance = True
    await start(harness)
    job = await harness.submit(duration_s=10)
    assert job.cost_usd == pytest.approx(0.023)
    await harness.listener.wait_for_phase(job.id, Phase.DONE)
    done = await harness.job(job.id)
    assert done.predict_time_s is not None
    assert done.cost_usd == pytest.approx(round(done.predict_time_s * 0.0014, 6))
    assert done.status == JobStatus.DELIVERED


async def test_prompt_rules_and_dms(harness: Harness, fake: FakeReplicate) -> None:
    await harness.start(
        safety={
            "blocked_words": ["Forbidden"],
            "blocked_patterns": [r"\bkill\w*"],
            "refuse_artist_names": True,
            "artist_names": ["Famous Singer"],
            "allow_dms": False,
        },
    )
    for prompt, message in [
        ("a forbidden tune", "uses a word this server doesn't allow"),
        ("killer riffs", "isn't allowed here"),
        ("in the style of famous singer", "describe the style instead of naming an artist"),
    ]:
        with pytest.raises(InvalidRequestError, match=message):
            await harness.submit(prompt)
    await harness.submit("forbiddenness is not the word")  # whole words only
    with pytest.raises(NotAllowedError, match="direct messages"):
        await harness.service.create(JobRequest(prompt="x"), JobOrigin(user_id=1, guild_id=None, channel_id=2))
    await fake.wait_for_prediction()
    sent = [r.json["input"]["prompt"] for r in fake.requests if r.method == "POST" and r.json]
    assert sent == ["forbiddenness is not the word"]  # nothing refused was ever submitted


async def test_fair_turns_with_a_provider_cap(harness: Harness, fake: FakeReplicate) -> None:
    await start(harness, replicate_jobs_in_flight=1)
    a1 = await harness.submit("a1", user_id=1)
    a2 = await harness.submit("a2", user_id=1)
    a3 = await harness.submit("a3", user_id=1)
    # Its card shows its place before b1 comes (the card is drawn by a task of its own, after database reads).
    await harness.listener.wait_for_phase(a3.id, Phase.QUEUED)
    b1 = await harness.submit("b1", user_id=2)  # comes last, goes second
    order = []
    for _ in range(4):
        pid = await fake.wait_for_prediction()
        order.append(fake.prediction(pid).input["prompt"])
        await fake.succeed(pid)
    assert order == ["a1", "b1", "a2", "a3"]  # b waited least but had been served least
    for job in (a1, a2, a3, b1):
        assert await harness.listener.wait_for_phase(job.id) == Phase.DONE
    assert harness.listener.places[a3.id][0] == 2  # queued behind a2 (b1 hadn't come yet)
    assert harness.listener.places[b1.id][0] == 1  # then b1 went to the front of the line
