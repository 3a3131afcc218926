"""Several Encore engines on one database, as several processes share PostgreSQL: each a whole core (its own
connection pool, Replicate client and job service) in this test's process, against one fake Replicate.

Admission is one transaction per request, alone for its person and server in every process, so two engines
racing for the last slot admit exactly one; the fair scheduler's cap counts the jobs of every engine; and
Replicate's per-account limits are one budget for them all (the fake enforces Replicate's limits and counts
its 429s). A request that dies on its way in (cancelled while its file is read, or its connection killed while
it holds its locks) takes nothing from anyone's quota.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bot.errors import StorageError
from bot.jobs.limits import LimitError
from bot.jobs.phase import Phase
from bot.records import Job, JobOrigin, JobRequest, JobStatus
from bot.storage.backend import LockName, lock_key
from tests.conftest import StorageBackend
from tests.fakes.replicate import FakeReplicate
from tests.integration.conftest import Harness

POSTGRES_ONLY = pytest.mark.parametrize("backend", ["postgres"], indirect=True)


class Cluster:
    """Engines ("processes") sharing one database and one storage directory (a shared volume)."""

    def __init__(self, fake: FakeReplicate, tmp_path: Path, backend: StorageBackend) -> None:
        self.fake = fake
        self.tmp_path = tmp_path
        self.backend = backend
        self.engines: list[Harness] = []

    async def start(self, count: int, **sections: dict[str, Any]) -> list[Harness]:
        sections["storage"] = {"dir": str(self.tmp_path / "shared"), **sections.get("storage", {})}
        for _ in range(count):
            engine = Harness(self.fake, self.tmp_path / f"engine{len(self.engines)}", self.backend)
            self.engines.append(engine)
            await engine.start(with_webhooks=False, **sections)
        return self.engines[-count:]

    async def stop(self) -> None:
        for engine in self.engines:
            await engine.stop()

    async def jobs(self) -> list[Job]:
        """Every job in the database, oldest first."""
        core = self.engines[0].core
        assert core is not None
        rows = await core.db.read("SELECT id FROM jobs ORDER BY created_at, id")
        return [await self.engines[0].job(str(row[0])) for row in rows]

    async def wait_done(self, job_ids: Sequence[str], *, timeout_s: float = 60.0) -> None:
        """Until every job's card shows Done at whichever engine delivered it."""

        async def one(job_id: str) -> None:
            waits = [
                asyncio.create_task(e.listener.wait_for_phase(job_id, Phase.DONE, timeout=timeout_s))
                for e in self.engines
            ]
            try:
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                await next(iter(done))
            finally:
                for wait in waits:
                    wait.cancel()

        async with asyncio.timeout(timeout_s):
            await asyncio.gather(*(one(job_id) for job_id in job_ids))


@pytest.fixture
async def cluster(fake: FakeReplicate, tmp_path: Path, backend: StorageBackend) -> AsyncIterator[Cluster]:
    made = Cluster(fake, tmp_path, backend)
    yield made
    await made.stop()


def origin(user_id: int, guild_id: int | None = 1) -> JobOrigin:
    return JobOrigin(user_id=user_id, guild_id=guild_id, channel_id=2)


async def outcomes(calls: Sequence[Awaitable[list[Job]]]) -> list[list[Job] | BaseException]:
    return await asyncio.gather(*calls, return_exceptions=True)


# -- admission ---------------------------------------------------------------------------------------


@pytest.mark.both_backends
async def test_two_processes_racing_for_the_last_slot_admit_exactly_one(cluster: Cluster) -> None:
    a, b = await cluster.start(2, limits={"user_daily_jobs": 1})
    people = range(100, 140)
    # Every person asks twice at the same moment, once at each engine: forty races at once.
    results = await outcomes(
        [engine.service.create(JobRequest(prompt=f"p{p}"), origin(p)) for p in people for engine in (a, b)]
    )
    unexpected = [r for r in results if isinstance(r, BaseException) and not isinstance(r, LimitError)]
    assert unexpected == []
    refused = [r for r in results if isinstance(r, LimitError)]
    assert len(refused) == len(people)
    assert all("You've made 1 of your 1 tracks today" in r.user_message for r in refused)
    stored = await cluster.jobs()
    assert sorted(job.user_id for job in stored) == list(people)  # exactly one each, none more


@pytest.mark.both_backends
async def test_a_server_s_and_encore_s_last_slots_are_taken_once_across_processes(cluster: Cluster) -> None:
    # MusicGen is estimated at $0.0023 per output second: 10 s is $0.023, and $0.1 holds four of them.
    a, b = await cluster.start(2, limits={"guild_daily_jobs": 5, "daily_budget_usd": 0.1})
    same_server = await outcomes(
        [(a, b)[p % 2].service.create(JobRequest(prompt="x", duration_s=10), origin(p, guild_id=7)) for p in range(12)]
    )
    assert sum(isinstance(r, list) for r in same_server) == 4  # Encore's budget is reached first
    assert all(isinstance(r, LimitError) for r in same_server if not isinstance(r, list))
    await cluster.stop()
    cluster.engines.clear()
    a, b = await cluster.start(2, limits={"guild_daily_jobs": 5})
    busy_server = await outcomes(
        [(a, b)[p % 2].service.create(JobRequest(prompt="y"), origin(1000 + p, guild_id=8)) for p in range(12)]
    )
    assert sum(isinstance(r, list) for r in busy_server) == 5
    everyone = await outcomes(
        [(a, b)[p % 2].service.create(JobRequest(prompt="z"), origin(2000 + p, guild_id=100 + p)) for p in range(8)]
    )
    assert all(isinstance(r, list) for r in everyone)  # other servers aren't held up by one's quota
    stored = await cluster.jobs()
    assert sum(job.guild_id == 7 for job in stored) == 4
    assert sum(job.guild_id == 8 for job in stored) == 5


@pytest.mark.both_backends
async def test_a_request_cancelled_while_its_file_is_read_takes_no_quota(cluster: Cluster) -> None:
    [engine] = await cluster.start(1, limits={"user_daily_jobs": 1})
    reading, never = asyncio.Event(), asyncio.Event()

    async def slow_download() -> Path:  # the person's file, as the entry point fetches it
        reading.set()
        await never.wait()
        raise AssertionError("unreachable")

    melody = asyncio.create_task(engine.service.follow_melody(slow_download, origin(5), prompt="hum"))
    async with asyncio.timeout(10):
        await reading.wait()  # the quotas were looked at, the file is being read: nothing is held or stored
    melody.cancel()
    with pytest.raises(asyncio.CancelledError):
        await melody
    [job] = await engine.service.create(JobRequest(prompt="after"), origin(5))  # the one slot is still there
    assert [j.id for j in await cluster.jobs()] == [job.id]


# An admission holding person 9's advisory lock, waiting for the jobs table to insert.
HOLDING_AND_WAITING = """
SELECT w.pid FROM pg_locks AS w JOIN pg_locks AS h ON h.pid = w.pid
 WHERE w.locktype = 'relation' AND w.relation = 'jobs'::regclass AND NOT w.granted
   AND h.locktype = 'advisory' AND h.granted AND h.classid = $1 AND h.objid = $2 AND h.objsubid = 1
 LIMIT 1
"""
# An admission waiting for person 9's advisory lock.
WAITING_FOR_LOCKS = """
SELECT pid FROM pg_locks
 WHERE locktype = 'advisory' AND NOT granted AND classid = $1 AND objid = $2 AND objsubid = 1 LIMIT 1
"""


def lock_ids(name: LockName) -> tuple[int, int]:
    """How pg_locks shows an advisory lock on a bigint key: its high and low 32 bits."""
    key = lock_key(name) & 0xFFFFFFFFFFFFFFFF
    return key >> 32, key & 0xFFFFFFFF


async def backend_pid(operator: asyncpg.Connection, query: str, name: LockName) -> int:
    """The server process the lock query finds for ``name``, once it finds one (PostgreSQL's view of its locks)."""
    async with asyncio.timeout(20):
        # The server's lock table has no event to await: it is read again until it shows the wait.
        while (pid := await operator.fetchval(query, *lock_ids(name))) is None:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    return int(pid)


@POSTGRES_ONLY
@pytest.mark.parametrize("how", ["connection killed", "task cancelled"])
async def test_an_admission_that_dies_holding_its_locks_leaks_nothing(
    cluster: Cluster, backend: StorageBackend, how: str
) -> None:
    a, b = await cluster.start(2, limits={"user_daily_jobs": 1})
    assert backend.url is not None
    operator = await asyncpg.connect(backend.url)
    try:
        async with operator.transaction():
            # Another program holds the jobs table: an admission gets its locks, reads the quotas, and waits to
            # insert, holding its locks in the middle of its transaction.
            await operator.execute("LOCK TABLE jobs IN SHARE MODE")
            first = asyncio.create_task(a.service.create(JobRequest(prompt="first"), origin(9)))
            victim = await backend_pid(operator, HOLDING_AND_WAITING, ("user", 9))
            second = asyncio.create_task(b.service.create(JobRequest(prompt="second"), origin(9)))
            await backend_pid(operator, WAITING_FOR_LOCKS, ("user", 9))  # b waits for a's locks
            if how == "connection killed":
                assert await operator.fetchval("SELECT pg_terminate_backend($1)", victim)
                with pytest.raises(StorageError):  # (a friendly "storage trouble" line for the person)
                    await first
            else:
                first.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await first
        # The table is free again: the second request takes the slot the first never got.
        [job] = await asyncio.wait_for(second, 20)
    finally:
        await operator.close()
    assert [(j.id, j.prompt) for j in await cluster.jobs()] == [(job.id, "second")]
    with pytest.raises(LimitError):
        await a.service.create(JobRequest(prompt="third"), origin(9))


# -- the fair scheduler ------------------------------------------------------------------------------


@POSTGRES_ONLY
async def test_a_provider_cap_holds_across_three_processes(cluster: Cluster, fake: FakeReplicate) -> None:
    fake.auto_advance = True  # each poll moves a prediction one step: starting, processing, succeeded
    engines = await cluster.start(3, limits={"replicate_jobs_in_flight": 2})
    admitted = await outcomes(
        [engines[n % 3].service.create(JobRequest(prompt=f"j{n}", duration_s=1), origin(n)) for n in range(18)]
    )
    jobs = [job for result in admitted if isinstance(result, list) for job in result]
    assert len(jobs) == 18
    await cluster.wait_done([job.id for job in jobs])
    assert fake.max_in_flight == 2  # never more at Replicate at once, whichever engine started them
    delivered = [d.job_id for engine in cluster.engines for d in engine.listener.delivered]
    assert sorted(delivered) == sorted(job.id for job in jobs)  # each delivered once, by one engine
    stored = await cluster.jobs()
    assert all(job.status == JobStatus.DELIVERED for job in stored)


@POSTGRES_ONLY
async def test_fair_turns_across_processes(cluster: Cluster, fake: FakeReplicate) -> None:
    a, b = await cluster.start(2, limits={"replicate_jobs_in_flight": 1})
    first = [await a.submit(f"a{n}", user_id=1) for n in (1, 2, 3)]
    b1 = await b.submit("b1", user_id=2)  # comes last, at another engine: waits its turn, and goes second
    assert await b.listener.wait_for_phase(b1.id, Phase.QUEUED, Phase.STARTING) == Phase.QUEUED
    assert b.listener.places[b1.id] == [1]  # its card says it is next, ahead of a2 and a3 at the other engine
    order = []
    for _ in range(4):
        pid = await fake.wait_for_prediction()
        order.append(fake.prediction(pid).input["prompt"])
        await fake.succeed(pid)
    assert order == ["a1", "b1", "a2", "a3"]
    await cluster.wait_done([job.id for job in [*first, b1]])
    assert fake.max_in_flight == 1


@POSTGRES_ONLY
async def test_a_turn_taken_over_mid_create_keeps_the_prediction_the_taker_found(
    cluster: Cluster, fake: FakeReplicate
) -> None:
    quick = {"queue_check_s": 0.1, "process_timeout_s": 0.5}
    a, b = await cluster.start(2, jobs=quick)
    answer = asyncio.Event()
    fake.inject(method="POST", path="^/v1/predictions$", status=None, answer_when=answer)  # made, answer slow
    job = await a.submit("slow answer", user_id=3)
    pid = await fake.wait_for_prediction()
    # Either engine may have claimed the turn (both look at the queue): the one whose create waits is "a".
    holder = (await a.job(job.id)).claimed_by
    if holder == b.service.scheduler.instance:
        a, b = b, a
    assert holder == a.service.scheduler.instance
    await a.service.scheduler.stop()  # a stalls: it stops saying it is alive, its create still waiting
    # b takes the turn over once a looks gone, looks before creating (a tried), finds a's prediction, records it.
    assert await b.listener.wait_for_phase(job.id, Phase.STARTING) == Phase.STARTING
    assert (await b.job(job.id)).prediction_id == pid
    answer.set()  # a's create answers at last: the job is already submitted, with this very prediction
    await fake.succeed(pid)
    await cluster.wait_done([job.id])
    assert list(fake.predictions) == [pid]  # never created twice
    assert fake.prediction(pid).status == "succeeded"  # and a never canceled it
    assert [r.path for r in fake.requests if r.path.endswith("/cancel")] == []


# -- Replicate's limits are the account's ---------------------------------------------------------------


@POSTGRES_ONLY
async def test_replicate_creates_per_minute_stay_under_the_account_s_limit(
    cluster: Cluster, fake: FakeReplicate
) -> None:
    per_minute = 60
    fake.rate_limits = {"create": per_minute, "other": 3000}
    fake.auto_advance = True
    engines = await cluster.start(3, replicate={"creates_per_minute": per_minute})
    started = time.monotonic()
    admitted = await outcomes(
        [engines[n % 3].service.create(JobRequest(prompt=f"j{n}", duration_s=1), origin(n)) for n in range(30)]
    )
    assert all(isinstance(result, list) for result in admitted)
    # Each engine alone would spend a bucket of its own (two at once, then 55 a minute): three of them make
    # eight creates within a second. Shared, the account's one bucket lets them through no faster than that.
    creates = await wait_for_creates(fake, 8)
    first = creates[0]
    burst, rate = per_minute // 30, (per_minute * 95 // 100 - per_minute // 30) / 60
    for made, at in enumerate(creates, start=1):
        assert made <= burst + rate * (at - first) + 1, f"{made} creates {at - first:.2f} s after the first"
    assert fake.throttled == {}  # and Replicate never refused one
    assert time.monotonic() - started >= (8 - burst - 1) / rate  # (it took the time the budget says)


async def wait_for_creates(fake: FakeReplicate, count: int, *, timeout_s: float = 30.0) -> list[float]:
    """When (monotonic) the fake accepted each of the first ``count`` creates."""
    async with asyncio.timeout(timeout_s):
        while len(fake.calls_at("create")) < count:
            await fake.wait_for_prediction(timeout=timeout_s)
    return fake.calls_at("create")[:count]
