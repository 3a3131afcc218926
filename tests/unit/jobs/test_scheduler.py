"""Turns between people within a provider's cap, kept in the database: on SQLite and on a real PostgreSQL, with
one scheduler or several sharing the database (as several processes do)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import JobSettings
from bot.jobs.scheduler import Scheduler, queue_order
from bot.records import JobOrigin, JobStatus
from bot.storage.backend import Backend
from bot.storage.instances_repo import InstancesRepo
from bot.storage.job_rows import NewJob
from bot.storage.jobs_repo import JobsRepo
from bot.storage.queue_repo import QueueRepo
from tests.conftest import StorageBackend

pytestmark = pytest.mark.both_backends

P = "replicate"


class Engine:
    """One scheduler (one process's), recording the jobs it started."""

    def __init__(
        self, db: Backend, capacity: int, *, settings: JobSettings | None = None, journal: list[str] | None = None
    ) -> None:
        self.repo = JobsRepo(db)
        self.started: list[str] = []
        self.journal = journal if journal is not None else []  # what every engine sharing it started, in order
        self.moved: list[list[str]] = []
        self._started = asyncio.Event()
        self.settings = settings or JobSettings(queue_check_s=60.0, process_timeout_s=180.0)
        self.scheduler = Scheduler(
            QueueRepo(db),
            InstancesRepo(db),
            {P: capacity},
            self._start,
            settings=lambda: self.settings,
            clock=time.time,
            on_moved=self.moved.append,
        )

    def _start(self, job_id: str) -> None:
        self.started.append(job_id)
        self.journal.append(job_id)
        self._started.set()

    async def wait_started(self, timeout_s: float = 10.0) -> list[str]:
        """What it has started, once it has started something."""
        async with asyncio.timeout(timeout_s):
            await self._started.wait()
        return self.started

    async def add(self, job_id: str, user_id: int, *, reserved: bool = False) -> None:
        """A job admitted by this process, then a round of claims (as the gate does)."""
        origin = JobOrigin(user_id=user_id, guild_id=1, channel_id=2)
        job = NewJob(job_id, origin, P, "musicgen", "meta/musicgen", {"prompt": job_id}, {"prompt": job_id})
        if reserved:
            job = NewJob(**{**job.__dict__, "reserved_for": self.scheduler.reserved_for})
        await self.repo.insert_many([job])
        await self.scheduler.dispatch(P)

    async def finish(self, job_id: str) -> None:
        """The job leaves the provider (here: canceled), and its slot is offered again."""
        assert await self.repo.transition(job_id, JobStatus.CANCELED, error="done")
        self.scheduler.released(P)
        await self.scheduler.dispatch(P)

    async def places(self, *job_ids: str) -> list[int | None]:
        places = []
        for job_id in job_ids:
            job = await self.repo.get(job_id)
            assert job is not None
            places.append(await self.scheduler.position(job))
        return places


@pytest.fixture
async def engines(db: Backend) -> AsyncIterator[list[Engine]]:
    made: list[Engine] = []
    yield made
    for engine in made:
        await engine.scheduler.stop()


async def start(
    engines: list[Engine],
    db: Backend,
    capacity: int,
    *,
    settings: JobSettings | None = None,
    journal: list[str] | None = None,
) -> Engine:
    engine = Engine(db, capacity, settings=settings, journal=journal)
    engines.append(engine)
    await engine.scheduler.start()
    return engine


def test_the_order_is_least_served_first_then_longest_waiting() -> None:
    waiting = [("a2", 1), ("a3", 1), ("b1", 2), ("c1", 3), ("b2", 2)]
    assert queue_order(waiting, {1: 1}) == ["b1", "c1", "a2", "b2", "a3"]
    assert queue_order(waiting, {}) == ["a2", "b1", "c1", "a3", "b2"]


async def test_people_take_turns_not_one_fifo(db: Backend, engines: list[Engine]) -> None:
    engine = await start(engines, db, 1)
    for job in ("a1", "a2", "a3"):
        await engine.add(job, 1)
    await engine.add("b1", 2)
    await engine.add("c1", 3)
    assert engine.started == ["a1"]
    # a has been served once: b and c, who haven't, go first.
    assert await engine.places("b1", "c1", "a2", "a3") == [1, 2, 3, 4]
    for job in ("a1", "b1", "c1", "a2"):
        await engine.finish(job)
    assert engine.started == ["a1", "b1", "c1", "a2", "a3"]
    assert engine.moved[0] == ["c1", "a2", "a3"]  # when b1 started, the cards behind it moved up


async def test_cap_and_release(db: Backend, engines: list[Engine]) -> None:
    engine = await start(engines, db, 2)
    for n in range(4):
        await engine.add(f"j{n}", n)
    assert engine.started == ["j0", "j1"]
    assert await engine.scheduler.in_flight(P) == ["j0", "j1"]
    await engine.finish("j3")  # canceled while waiting: leaves the queue, frees nothing
    assert engine.started == ["j0", "j1"]
    await engine.finish("j0")
    assert engine.started == ["j0", "j1", "j2"]
    assert await engine.places("j2") == [None]  # started, not waiting


async def test_a_job_leaving_starts_one_another_process_admitted(db: Backend, engines: list[Engine]) -> None:
    """The release alone starts the next job, whichever process admitted it (no look every minute helps here)."""
    journal: list[str] = []
    first = await start(engines, db, 1, journal=journal)
    second = await start(engines, db, 1, journal=journal)
    await first.add("a1", 1)
    await second.add("b1", 2)  # waits: the one slot is a1's
    assert journal == ["a1"]
    assert await first.repo.transition("a1", JobStatus.CANCELED, error="done")
    async with asyncio.timeout(10):
        await first.scheduler.released(P)
    assert journal == ["a1", "b1"]


async def test_a_job_leaving_with_nothing_waiting_takes_no_lock(
    db: Backend, backend: StorageBackend, engines: list[Engine], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A thousand jobs finishing together don't queue for the claims' lock when nothing waits: the release
    looks without it, and finds nothing to claim while another process holds it."""
    engine = await start(engines, db, 1)
    await engine.add("a1", 1)
    assert await engine.repo.transition("a1", JobStatus.CANCELED, error="done")
    holding, done = asyncio.Event(), asyncio.Event()
    async with backend.opened(tmp_path / "test.sqlite3") as other:

        async def hold_the_lock() -> None:  # another process's round of claims, a long one
            async with other.transaction():
                await other.lock(("queue", P))
                await other.write("UPDATE jobs SET updated_at = updated_at WHERE id = 'a1'")  # SQLite: the write lock
                holding.set()
                await done.wait()

        holder = asyncio.create_task(hold_the_lock())
        try:
            async with asyncio.timeout(30):
                await holding.wait()
                await engine.scheduler.released(P)  # a round would wait out the busy timeout, then give up
        finally:
            done.set()
            await holder
    assert "can't look at the" not in caplog.text
    assert engine.started == ["a1"]


async def test_jobs_at_the_provider_hold_their_slot(db: Backend, engines: list[Engine]) -> None:
    repo = JobsRepo(db)
    await repo.insert_many([NewJob("old", JobOrigin(user_id=9), P, "musicgen", "meta/musicgen", {}, {})])
    assert await repo.transition("old", JobStatus.SUBMITTED, prediction_id="p-old")  # at the provider at startup
    engine = await start(engines, db, 1)
    await engine.add("new", 1)
    assert engine.started == []
    assert await engine.repo.transition("old", JobStatus.FAILED, error="x")
    await engine.scheduler.dispatch(P)
    assert engine.started == ["new"]


async def test_no_cap_means_everything_starts(db: Backend, engines: list[Engine]) -> None:
    engine = await start(engines, db, 0)
    for n in range(20):  # more than one transaction's worth of claims
        await engine.repo.insert_many(
            [NewJob(f"j{n:02d}", JobOrigin(user_id=1), P, "musicgen", "meta/musicgen", {}, {})]
        )
    await engine.scheduler.dispatch(P)
    assert engine.started == [f"j{n:02d}" for n in range(20)]


async def test_new_caps_apply_to_jobs_already_waiting(db: Backend, engines: list[Engine]) -> None:
    engine = await start(engines, db, 1)
    for n in range(4):
        await engine.add(f"j{n}", n)
    assert engine.started == ["j0"]
    engine.scheduler.set_capacities({P: 3})  # raised: two waiting jobs start at once
    await engine.scheduler.dispatch(P)
    assert engine.started == ["j0", "j1", "j2"]
    assert engine.scheduler.capacity(P) == 3
    engine.scheduler.set_capacities({P: 1})  # lowered: running jobs finish, nothing new starts until under the cap
    await engine.finish("j0")
    await engine.finish("j1")
    assert engine.started == ["j0", "j1", "j2"]
    await engine.finish("j2")
    assert engine.started == ["j0", "j1", "j2", "j3"]


async def test_two_processes_share_one_cap_and_one_set_of_turns(db: Backend, engines: list[Engine]) -> None:
    journal: list[str] = []
    first = await start(engines, db, 1, journal=journal)
    second = await start(engines, db, 1, journal=journal)
    for job in ("a1", "a2", "a3"):
        await first.add(job, 1)
    await second.add("b1", 2)  # admitted by the other process: it waits for the one slot too
    assert journal == ["a1"]  # (claimed by whichever process looked first)
    assert await second.places("b1", "a2", "a3") == [1, 2, 3]  # b, served least, goes next in either process
    await first.finish("a1")
    assert journal == ["a1", "b1"]
    await second.finish("b1")
    await first.finish("a2")
    assert journal == ["a1", "b1", "a2", "a3"]
    assert sorted(first.started + second.started) == sorted(journal)  # each started once, by one of them


async def test_a_gone_process_s_turn_is_taken_over_and_a_live_one_s_is_not(db: Backend, engines: list[Engine]) -> None:
    quick = JobSettings(queue_check_s=0.1, process_timeout_s=0.5)
    alive = await start(engines, db, 1, settings=quick)
    await alive.add("a1", 1)  # alive claims it and is starting it
    other = await start(engines, db, 1, settings=quick)
    await other.scheduler.dispatch(P)
    assert (alive.started, other.started) == (["a1"], [])  # alive beats: its turn stays its own
    await alive.scheduler.stop()  # it dies without handing its turn back
    # The other process's own looks (every 0.1 s) find it gone once it has been silent for 0.5 s.
    assert await other.wait_started() == ["a1"]
    job = await other.repo.get("a1")
    assert job is not None
    assert (job.status, job.claimed_by) == (JobStatus.QUEUED, other.scheduler.instance)


async def test_a_terminal_run_s_jobs_wait_for_it_alone(db: Backend, engines: list[Engine]) -> None:
    bot = await start(engines, db, 1)
    terminal = Engine(db, 1)
    engines.append(terminal)
    await terminal.scheduler.start(any_job=False)
    await bot.add("busy", 1)  # the bot's job takes the one slot
    await terminal.add("mine", 0, reserved=True)
    await bot.add("b1", 2)
    await bot.finish("busy")
    assert (bot.started, terminal.started) == (["busy", "b1"], [])  # the bot passes the terminal's job by
    await bot.finish("b1")
    await terminal.scheduler.dispatch(P)
    assert terminal.started == ["mine"]


async def test_leaving_hands_back_the_turns_it_had(db: Backend, engines: list[Engine]) -> None:
    first = await start(engines, db, 1)
    await first.add("a1", 1)
    await first.scheduler.stop()
    await first.scheduler.leave()  # a graceful stop: its submission was cut off before the job was created
    job = await first.repo.get("a1")
    assert job is not None
    assert (job.claimed_by, job.claimed_at) == (None, None)
    second = await start(engines, db, 1)
    await second.scheduler.dispatch(P)
    assert second.started == ["a1"]  # at once, without waiting for the first to look gone


async def test_leaving_keeps_the_turn_of_a_job_whose_create_may_have_reached_the_provider(
    db: Backend, engines: list[Engine]
) -> None:
    first = await start(engines, db, 1)
    await first.add("a1", 1)
    # Its create was on its way when the stop cut the submission off: the prediction may run at the provider.
    assert await first.repo.update_fields("a1", when_status=[JobStatus.QUEUED], attempts=1)
    await first.scheduler.stop()
    await first.scheduler.leave()
    job = await first.repo.get("a1")
    assert job is not None
    assert job.claimed_by == first.scheduler.instance  # still counted under the cap of one
    second = await start(engines, db, 1)
    await second.add("b1", 2)
    await second.scheduler.dispatch(P)
    assert second.started == ["a1"]  # taken over at once (the first is gone); b1 waits for the one slot
