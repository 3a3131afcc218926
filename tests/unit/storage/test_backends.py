"""The repositories and the backend interface on both databases, SQLite and a real PostgreSQL: what is written
comes back exactly, every query answers the same, and a transaction is whole or nothing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from bot.guild_settings import GuildSettings
from bot.preferences import Preferences
from bot.records import JobOrigin, JobStatus
from bot.storage.backend import Backend
from bot.storage.guild_repo import GuildRepo
from bot.storage.job_rows import NewJob
from bot.storage.jobs_repo import JobsRepo
from bot.storage.loops_repo import LoopRecord, LoopsRepo
from bot.storage.plans_repo import PlansRepo
from bot.storage.prefs_repo import PreferencesRepo
from bot.storage.state_repo import StateRepo
from bot.storage.stats_repo import StatsRepo
from tests.conftest import StorageBackend

pytestmark = pytest.mark.both_backends

BIGGEST = 2**63 - 1  # the largest snowflake either database holds (a signed 64-bit integer)
DAY = 86_400.0


def new_job(
    job_id: str,
    *,
    user_id: int = 42,
    guild_id: int | None = 1,
    interaction_id: int | None = None,
    model: str = "musicgen",
    request: dict[str, Any] | None = None,
    batch: tuple[str, int, int] | None = None,
    input_files: dict[str, str] | None = None,
    cost_usd: float = 0.0,
) -> NewJob:
    return NewJob(
        job_id=job_id,
        origin=JobOrigin(user_id=user_id, guild_id=guild_id, channel_id=2, interaction_id=interaction_id),
        provider="replicate",
        model=model,
        model_ref="meta/musicgen",
        request={"prompt": "lofi", "duration_s": 8, **(request or {})},
        input={"prompt": "lofi", "duration": 8},
        batch=batch,
        input_files=input_files,
        cost_usd=cost_usd,
    )


async def stored(repo: JobsRepo, job_id: str) -> JobStatus:
    job = await repo.get(job_id)
    assert job is not None
    return job.status


# -- what goes in comes out -------------------------------------------------------------------------


def as_kept(backend: StorageBackend, text: str) -> str:
    """``text`` as the backend keeps it: PostgreSQL holds no NUL, nor half a surrogate pair (see its backend)."""
    if backend.name == "sqlite":
        return text
    return "".join("\ufffd" if char == "\x00" or 0xD800 <= ord(char) <= 0xDFFF else char for char in text)


async def test_ids_times_and_json_come_back_exactly(backend: StorageBackend, repo: JobsRepo) -> None:
    text = "nul \u0000, \ud800 half a pair, \u202e bidi, 🎷, 'quotes' \"and\" \\backslashes \\u0000"
    hostile = {"prompt": text, "nested": {"a": [1.5, None]}}
    kept = {"prompt": as_kept(backend, text), "nested": {"a": [1.5, None]}}
    job = await repo.insert(
        job_id="exact00001",
        origin=JobOrigin(
            user_id=BIGGEST,
            guild_id=BIGGEST - 1,
            channel_id=BIGGEST - 2,
            interaction_id=BIGGEST - 3,
            token_expires_at=1_700_000_900.123456,
            card_message_id=BIGGEST - 4,
        ),
        provider="replicate",
        model="musicgen",
        model_ref="meta/musicgen",
        request=hostile,
        input={"prompt": hostile["prompt"], "seed": 2**62},
        now=1_700_000_000.123456,
        input_files={"input_audio": "/data/inputs/a.wav"},
        cost_usd=0.0123,
    )
    assert (job.user_id, job.guild_id, job.channel_id) == (BIGGEST, BIGGEST - 1, BIGGEST - 2)
    assert (job.interaction_id, job.card_message_id) == (BIGGEST - 3, BIGGEST - 4)
    assert (job.created_at, job.token_expires_at, job.cost_usd) == (1_700_000_000.123456, 1_700_000_900.123456, 0.0123)
    assert job.request == kept
    assert job.input == {"prompt": kept["prompt"], "seed": 2**62}
    assert job.input_files == {"input_audio": "/data/inputs/a.wav"}
    assert await repo.transition(job.id, JobStatus.SUBMITTED, prediction_id="p1", seed=2**62)
    assert await repo.transition(job.id, JobStatus.RUNNING)
    assert await repo.transition(
        job.id,
        JobStatus.SUCCEEDED,
        output_path="/x.wav",
        output_size=5 * 2**30,
        result_json=json.dumps(hostile),
        error=text.replace("\ud800", ""),  # raw text (a surrogate alone can't be encoded for either database)
    )
    assert await repo.transition(job.id, JobStatus.DELIVERED, delivery_message_id=BIGGEST)
    done = await repo.get(job.id)
    assert done is not None
    assert (done.seed, done.output_size, done.delivery_message_id) == (2**62, 5 * 2**30, BIGGEST)
    assert done.result == kept
    assert done.error == as_kept(backend, text.replace("\ud800", ""))
    assert await repo.for_message(BIGGEST, channel_id=BIGGEST - 2) == [done]
    assert await repo.for_message(BIGGEST - 4, channel_id=BIGGEST - 2) == [done]  # its card
    assert await repo.for_message(BIGGEST, channel_id=3) == []  # another channel


async def test_a_batch_is_stored_whole_or_not_at_all(repo: JobsRepo) -> None:
    await repo.insert_many([new_job("taken00001")])
    batch = [new_job(f"batch{i:05d}", batch=("b1", i, 3)) for i in range(2)] + [new_job("taken00001")]
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):  # a broken constraint: the driver's own error
        await repo.insert_many(batch)
    assert [job.id for job in await repo.list_active()] == ["taken00001"]
    stored_batch = await repo.insert_many([new_job(f"batch{i:05d}", batch=("b1", i, 2)) for i in range(2)])
    assert [job.id for job in await repo.list_batch("b1")] == [job.id for job in stored_batch]


# -- the jobs repository's questions ----------------------------------------------------------------


async def test_usage_counts_what_quotas_count(repo: JobsRepo) -> None:
    now = 1_000_000.0
    await repo.insert_many([new_job("old0000001", request={"duration_s": 30})], now=now - 2 * DAY)
    await repo.insert_many(
        [new_job(f"var000000{i}", batch=("v1", i, 2), cost_usd=0.25, request={"duration_s": 10}) for i in range(2)],
        now=now - 60,
    )
    await repo.insert_many([new_job("failed0001", request={"duration_s": 20})], now=now - 30)
    assert await repo.transition("failed0001", JobStatus.FAILED, error="x")  # gives its share back
    await repo.insert_many([new_job("other00001", user_id=7, cost_usd=1.0, request={"duration_s": 12.5})], now=now)
    await repo.insert_many([new_job("elsewhere1", user_id=7, guild_id=9, cost_usd=2.0)], now=now)

    usage = await repo.usage(user_id=42, guild_id=1, since=now - DAY)
    assert usage.user_in_flight == 2  # the old job and the batch (as one); not the failed one
    assert (usage.user_jobs, usage.user_audio_s, usage.user_last_at) == (2, 20.0, now - 30)
    assert (usage.guild_jobs, usage.guild_audio_s) == (3, 32.5)
    assert (usage.guild_cost_usd, usage.total_cost_usd) == (1.5, 3.5)
    nobody = await repo.usage(user_id=5, guild_id=None, since=now - DAY)
    assert (nobody.user_in_flight, nobody.user_jobs, nobody.user_last_at, nobody.guild_jobs) == (0, 0, None, 0)
    assert nobody.total_cost_usd == 3.5


async def test_lineage_history_and_timing_queries(repo: JobsRepo) -> None:
    await repo.insert_many([new_job("parent0001")], now=100.0)
    await repo.insert_many(
        [new_job("child00002", request={"context": {"kind": "continuation", "parent": "parent0001"}})], now=102.0
    )
    await repo.insert_many(
        [new_job("child00001", request={"context": {"kind": "continuation", "parent": "parent0001"}})], now=101.0
    )
    await repo.insert_many(
        [new_job("retake0001", request={"context": {"kind": "retake", "parent": "parent0001"}})], now=103.0
    )
    assert [job.id for job in await repo.children("parent0001")] == ["child00001", "child00002"]
    assert await repo.children("child00001") == []

    jobs, total = await repo.page_for_user(42, page=0, per_page=3)
    assert (total, [job.id for job in jobs]) == (4, ["retake0001", "child00002", "child00001"])
    jobs, total = await repo.page_for_user(42, page=1, per_page=3)
    assert (total, [job.id for job in jobs]) == (4, ["parent0001"])
    assert [job.id for job in await repo.list_for_user(42, limit=2)] == ["retake0001", "child00002"]

    for job_id, took in (("parent0001", 4.0), ("child00001", 6.0)):
        assert await repo.transition(job_id, JobStatus.SUBMITTED, now=200.0)
        assert await repo.transition(job_id, JobStatus.SUCCEEDED, now=200.0 + took)
    assert await repo.typical_run_s("musicgen") == 5.0
    assert await repo.typical_run_s("stable-audio") is None


async def test_conditional_updates_and_counters(repo: JobsRepo) -> None:
    await repo.insert_many([new_job("job0000001")])
    assert await repo.set_input("job0000001", {"prompt": "uploaded"})
    assert await repo.update_fields("job0000001", when_status=[JobStatus.QUEUED], error="note")
    assert not await repo.update_fields("job0000001", when_status=[JobStatus.RUNNING], error="no")
    assert await repo.transition("job0000001", JobStatus.SUBMITTED)  # no prediction id yet
    assert await repo.replace_prediction("job0000001", old=None, new="p1")  # NULL matches NULL
    assert not await repo.replace_prediction("job0000001", old=None, new="p2")
    assert await repo.replace_prediction("job0000001", old="p1", new="p2")
    assert not await repo.set_input("job0000001", {"prompt": "too late"})
    job = await repo.get("job0000001")
    assert job is not None
    assert (job.prediction_id, job.attempts, job.error, job.input) == ("p2", 2, "note", {"prompt": "uploaded"})

    assert await repo.transition("job0000001", JobStatus.SUCCEEDED)
    assert [await repo.count_delivery_attempt("job0000001") for _ in range(3)] == [1, 2, 3]
    assert await repo.transition("job0000001", JobStatus.DELIVERED)
    assert [job.id for job in await repo.list_cards_behind()] == []  # no Discord card to finish
    assert await repo.paths_in_use(made_since=0.0) == set()

    assert await repo.remember_webhook("msg_1", now=10.0)
    assert not await repo.remember_webhook("msg_1", now=11.0)  # a redelivery
    assert await repo.prune_webhooks(older_than=10.5) == 1


async def test_cards_behind_and_files_in_use(repo: JobsRepo) -> None:
    await repo.insert_many([new_job("card000001", interaction_id=5, input_files={"input_audio": "/in/a.wav"})])
    await repo.insert_many([new_job("running001", input_files={"input_audio": "/in/b.wav"})], now=1.0)
    assert await repo.transition("card000001", JobStatus.FAILED, error="x", output_path="/out/a.wav")
    assert [job.id for job in await repo.list_cards_behind()] == ["card000001"]
    await repo.mark_card_final(["card000001", "running001"])
    assert await repo.list_cards_behind() == []
    assert await repo.paths_in_use(made_since=1e12) == {"/in/b.wav"}  # only the unfinished job's
    assert await repo.paths_in_use(made_since=0.0) == {"/in/a.wav", "/in/b.wav", "/out/a.wav"}


# -- the other repositories -------------------------------------------------------------------------


async def test_plans_change_only_when_nobody_changed_them_first(backend: StorageBackend, db: Backend) -> None:
    plans = PlansRepo(db)
    plan = {"sections": [{"name": "Verse", "lines": ["la \u0000 la"]}], "styles": ["jazz"]}
    record = await plans.insert(
        plan_id="plan000001", user_id=BIGGEST, guild_id=1, channel_id=2, model_id="music_v1", prompt="p\x00", plan=plan
    )
    assert (await plans.get("plan000001")) == record
    kept = {"sections": [{"name": "Verse", "lines": [as_kept(backend, "la \u0000 la")]}], "styles": ["jazz"]}
    assert (record.plan, record.prompt, record.user_id) == (kept, as_kept(backend, "p\x00"), BIGGEST)
    assert await plans.update_plan("plan000001", {"sections": []}, expected_updated_at=record.updated_at)
    assert not await plans.update_plan("plan000001", {"lost": True}, expected_updated_at=record.updated_at)
    await plans.set_message("plan000001", BIGGEST)
    now = await plans.get("plan000001")
    assert now is not None
    assert (now.plan, now.message_id) == ({"sections": []}, BIGGEST)
    assert await plans.get("nothing") is None


async def test_guild_settings_state_and_stats(db: Backend, repo: JobsRepo) -> None:
    guilds = GuildRepo(db)
    assert await guilds.get(BIGGEST) == GuildSettings()
    chosen = GuildSettings(allowed_models=["musicgen"], channels=[BIGGEST], blocked_words=["x"])
    await guilds.save(BIGGEST, chosen, by=7)
    await guilds.save(BIGGEST, chosen.model_copy(update={"max_duration_s": 10}), by=8)
    assert await guilds.get(BIGGEST) == chosen.model_copy(update={"max_duration_s": 10})

    state = StateRepo(db)
    assert await state.get("paused") is None
    await state.put("paused", "1", now=1.0)
    await state.put("paused", "2", now=2.0)
    assert await state.get("paused") == "2"
    assert await state.delete("paused")
    assert not await state.delete("paused")

    await repo.insert_many([new_job("stat000001")], now=5.0)
    await repo.insert_many([new_job("stat000002", model="stable-audio")], now=6.0)
    assert await repo.transition("stat000001", JobStatus.FAILED, error="x")
    stats = StatsRepo(db)
    assert await stats.counts_by_status() == {JobStatus.FAILED: 1, JobStatus.QUEUED: 1}
    assert await stats.counts_by_model_and_status() == [
        ("musicgen", JobStatus.FAILED, 1),
        ("stable-audio", JobStatus.QUEUED, 1),
    ]
    oldest = await stats.oldest_active()
    assert oldest is not None
    assert (oldest.id, oldest.model, oldest.status, oldest.created_at) == (
        "stat000002",
        "stable-audio",
        JobStatus.QUEUED,
        6.0,
    )


# -- transactions -----------------------------------------------------------------------------------


async def test_a_transaction_keeps_everything_or_nothing(db: Backend, repo: JobsRepo) -> None:
    async with db.transaction():
        await repo.insert_many([new_job("kept000001")])
        assert await repo.transition("kept000001", JobStatus.SUBMITTED)
        assert await stored(repo, "kept000001") == JobStatus.SUBMITTED  # the transaction sees its own work
    assert await stored(repo, "kept000001") == JobStatus.SUBMITTED

    with pytest.raises(RuntimeError, match="changed my mind"):  # noqa: PT012 - the whole transaction
        async with db.transaction():
            await repo.insert_many([new_job("gone000001")])
            assert await repo.transition("kept000001", JobStatus.RUNNING)
            async with db.transaction():  # a nested block joins the outer one
                await StateRepo(db).put("paused", "1", now=1.0)
            raise RuntimeError("changed my mind")
    assert await repo.get("gone000001") is None
    assert await stored(repo, "kept000001") == JobStatus.SUBMITTED
    assert await StateRepo(db).get("paused") is None


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
async def test_other_tasks_never_see_a_transaction_half_done(db: Backend, repo: JobsRepo, outcome: str) -> None:
    inside, finish = asyncio.Event(), asyncio.Event()
    ended = False

    async def transaction() -> None:
        nonlocal ended
        try:
            async with db.transaction():
                await repo.insert_many([new_job("half000001")])
                inside.set()
                await finish.wait()
                if outcome == "rollback":
                    raise RuntimeError("rolled back")
        except RuntimeError:
            pass
        ended = True

    async def reader() -> tuple[bool, bool]:
        await inside.wait()
        seen = await repo.get("half000001") is not None  # SQLite waits for the transaction; PostgreSQL doesn't
        return seen, ended

    async with asyncio.timeout(10):
        writer = asyncio.create_task(transaction())
        reading = asyncio.create_task(reader())
        await inside.wait()
        await asyncio.sleep(0)  # the reader's query is on its way
        finish.set()
        await writer
        seen, ended_by_then = await reading
    if seen:
        assert outcome == "commit"
        assert ended_by_then  # seen only once committed
    assert (await repo.get("half000001") is not None) == (outcome == "commit")


async def test_check_then_act_in_transactions_has_one_winner(db: Backend, repo: JobsRepo) -> None:
    """Two callers that each read a job and then move it, each in a transaction: the conditional UPDATE lets
    exactly one of them win, on both databases (PostgreSQL's second UPDATE waits for the first's row lock, then
    finds the job moved)."""
    for n in range(10):
        job_id = f"race{n:06d}"
        await repo.insert_many([new_job(job_id)])

        async def claim(job_id: str = job_id) -> bool:
            async with db.transaction():
                job = await repo.get(job_id)
                assert job is not None
                if job.status != JobStatus.QUEUED:
                    return False
                return await repo.transition(job_id, JobStatus.SUBMITTED, expect_from=[JobStatus.QUEUED])

        results = await asyncio.gather(claim(), claim(), claim())
        assert sorted(results) == [False, False, True]
        assert await stored(repo, job_id) == JobStatus.SUBMITTED


# -- the tables other features added (loops, preferences): their upserts hold on both ---------------


async def test_a_loop_is_claimed_once_and_never_again_once_posted(db: Backend, repo: JobsRepo) -> None:
    await repo.insert_many([new_job("loopjob001")])
    loops = LoopsRepo(db)

    def claim_of(token: str, at: float) -> LoopRecord:
        return LoopRecord(
            job_id="loopjob001",
            bars=4,
            channel_id=BIGGEST,
            guild_id=BIGGEST,
            user_id=BIGGEST,
            token=token,
            claimed_at=at,
            message_id=None,
        )

    won = await asyncio.gather(*(loops.claim(claim_of(f"t{i}", 100.0), abandoned_before=0.0) for i in range(4)))
    assert sorted(won) == [False, False, False, True]
    winner = claim_of(f"t{won.index(True)}", 100.0)
    assert await loops.claim(claim_of("late", 500.0), abandoned_before=200.0)  # the first one gave up
    assert not await loops.posted(winner, BIGGEST)  # overtaken
    assert await loops.posted(claim_of("late", 500.0), BIGGEST)
    assert not await loops.claim(claim_of("again", 9e9), abandoned_before=9e9)  # posted: never again
    [posted] = await loops.posted_in("loopjob001", BIGGEST)
    assert (posted.token, posted.message_id, posted.guild_id) == ("late", BIGGEST, BIGGEST)
    assert await loops.made_since(BIGGEST, 0.0) == 1
    await loops.forget("loopjob001", 4, BIGGEST, message_id=BIGGEST)
    assert await loops.get("loopjob001", 4, BIGGEST) is None


async def test_preferences_are_stored_whole_and_the_table_refuses_nonsense(db: Backend) -> None:
    prefs = PreferencesRepo(db)
    assert await prefs.get(BIGGEST) == Preferences()
    await prefs.save(BIGGEST, Preferences(model="musicgen", duration_s=30, format="mp3", count=2), now=1.0)
    await prefs.save(BIGGEST, Preferences(duration_s=10), now=2.0)  # whole: the rest is cleared
    assert await prefs.get(BIGGEST) == Preferences(duration_s=10)
    with pytest.raises(Exception, match=r"(?i)check"):  # a CHECK constraint: the driver's own error (a bug)
        await db.write("INSERT INTO user_preferences (user_id, count, updated_at) VALUES (3, 9, 0)")
    assert await prefs.clear(BIGGEST)
    assert not await prefs.clear(BIGGEST)
