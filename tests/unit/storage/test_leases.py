"""Leases on both databases: taken when absent, ours or expired; renewed only by their holder; one winner when
processes race for the same one (separate connection pools on PostgreSQL, as separate processes have); and
the queries that find work whose process is gone."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.records import JobStatus
from bot.storage.backend import Backend
from bot.storage.jobs_repo import JobsRepo
from bot.storage.leases_repo import LeasesRepo
from tests.conftest import StorageBackend
from tests.unit.storage.test_backends import new_job

pytestmark = pytest.mark.both_backends

NOW = 1_000_000.0


async def test_a_lease_is_taken_when_free_renewed_by_its_holder_and_taken_over_once_expired(db: Backend) -> None:
    leases = LeasesRepo(db)
    assert await leases.take("poll", ["job1"], holder="A", until=NOW + 30, now=NOW) == {"job1"}
    # Another process can't take it while it lasts, not even a second before it ends.
    assert await leases.take("poll", ["job1"], holder="B", until=NOW + 60, now=NOW + 29) == set()
    assert await leases.holder_of("poll", "job1", now=NOW + 29) == "A"
    # Its holder renews it (take and renew both do), and only its holder can.
    assert await leases.take("poll", ["job1"], holder="A", until=NOW + 40, now=NOW + 10) == {"job1"}
    assert await leases.renew("poll", ["job1"], holder="A", until=NOW + 50) == {"job1"}
    assert await leases.renew("poll", ["job1"], holder="B", until=NOW + 90) == set()
    assert await leases.take("poll", ["job1"], holder="B", until=NOW + 90, now=NOW + 49) == set()
    # Expired: the next taker gets it, and the old holder's renewal finds it gone.
    assert await leases.take("poll", ["job1"], holder="B", until=NOW + 90, now=NOW + 51) == {"job1"}
    assert await leases.renew("poll", ["job1"], holder="A", until=NOW + 100) == set()
    assert await leases.holder_of("poll", "job1", now=NOW + 60) == "B"
    # Kinds are apart: the same key under another kind is another lease.
    assert await leases.take("fetch", ["job1"], holder="A", until=NOW + 90, now=NOW + 60) == {"job1"}


async def test_many_leases_are_taken_and_renewed_at_once_each_to_whoever_may(db: Backend) -> None:
    leases = LeasesRepo(db)
    keys = [f"job{n:04d}" for n in range(450)]  # more than one statement's worth
    assert await leases.take("poll", keys[:300], holder="A", until=NOW + 30, now=NOW) == set(keys[:300])
    # B asks for all of them: it gets those nobody held.
    assert await leases.take("poll", keys, holder="B", until=NOW + 30, now=NOW) == set(keys[300:])
    assert await leases.renew("poll", keys, holder="A", until=NOW + 60) == set(keys[:300])
    await leases.release("poll", keys[0], holder="A")
    assert not await leases.release("poll", keys[1], holder="B")  # only the holder gives a lease up
    assert await leases.renew("poll", keys[:3], holder="A", until=NOW + 60) == set(keys[1:3])
    assert await leases.release_all("A") == 299
    assert await leases.take("poll", keys[:300], holder="B", until=NOW + 30, now=NOW) == set(keys[:300])
    assert await leases.prune(expired_before=NOW + 31) == 450


async def test_processes_racing_for_one_lease_have_one_winner(
    backend: StorageBackend, db: Backend, tmp_path: Path
) -> None:
    """Ten takers at once, each through a connection of its own (on PostgreSQL each a pool of its own, as ten
    processes would be): exactly one holds each lease, every round."""
    others = [backend.database(tmp_path / "test.sqlite3") for _ in range(9)] if backend.url else []
    for other in others:
        await other.open(migrate=False)
    try:
        repos = [LeasesRepo(db), *(LeasesRepo(other) for other in others)]
        for round_ in range(10):
            key = f"job{round_}"
            won = await asyncio.gather(
                *(
                    repos[n % len(repos)].take("deliver", [key], holder=f"P{n}", until=NOW + 30, now=NOW)
                    for n in range(10)
                )
            )
            assert sum(1 for taken in won if taken == {key}) == 1
    finally:
        for other in others:
            await other.close()


async def test_orphans_are_jobs_no_live_lease_covers(db: Backend, repo: JobsRepo) -> None:
    leases = LeasesRepo(db)
    await repo.insert_many([new_job(f"run{n:07d}") for n in range(4)])
    for n in range(4):
        await repo.transition(f"run{n:07d}", JobStatus.SUBMITTED, prediction_id=f"p{n}", now=NOW)
    await leases.take("poll", ["run0000000"], holder="A", until=NOW + 30, now=NOW)  # polled
    await leases.take("fetch", ["run0000001"], holder="A", until=NOW + 30, now=NOW)  # its output is being fetched
    await leases.take("poll", ["run0000002"], holder="A", until=NOW - 1, now=NOW - 31)  # expired: A is gone
    found = await leases.unleased_at_provider(["poll", "fetch"], ["replicate"], now=NOW, limit=10)
    assert [job.id for job in found] == ["run0000002", "run0000003"]
    assert await leases.unleased_at_provider(["poll"], ["cog"], now=NOW, limit=10) == []  # another provider's


async def test_undelivered_cards_are_finished_quiet_and_unclaimed_one_per_card(db: Backend, repo: JobsRepo) -> None:
    leases = LeasesRepo(db)
    await repo.insert_many([new_job("solo000001"), new_job("held000001")])
    await repo.insert_many([new_job(f"var{n}0000000", batch=("batch00001", n, 3)) for n in range(3)])
    await repo.insert_many([new_job(f"wip{n}0000000", batch=("batch00002", n, 2)) for n in range(2)])
    for job_id in ("solo000001", "held000001", "var00000000", "var10000000", "var20000000", "wip00000000"):
        await repo.transition(job_id, JobStatus.SUBMITTED, now=NOW)
        await repo.transition(job_id, JobStatus.SUCCEEDED, output_path="x.wav", now=NOW)
    await repo.transition("wip10000000", JobStatus.SUBMITTED, now=NOW)  # a variation still being made
    await leases.take("deliver", ["held000001"], holder="A", until=NOW + 30, now=NOW)  # being delivered
    found = await leases.undelivered("deliver", now=NOW + 10, quiet_since=NOW + 5, limit=50)
    assert sorted(job.card_key for job in found) == ["batch00001", "solo000001"]
    # Jobs that changed lately are left to their own process a while longer.
    assert await leases.undelivered("deliver", now=NOW + 10, quiet_since=NOW - 5, limit=50) == []
