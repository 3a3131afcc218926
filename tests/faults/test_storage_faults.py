"""Storage faults: a locked database and a full disk give a clear error, lose and corrupt nothing, and heal.

Everything runs through the real core (database, Replicate client, job service, web server for /healthz)
against the fake Replicate, on real SQLite files. What is real and what is simulated:

* Locked database: real. A second SQLite connection (:class:`WriteLock`) holds the write lock with
  ``BEGIN IMMEDIATE`` or ``BEGIN EXCLUSIVE`` (the same lock in WAL mode), as an operator's ``sqlite3`` shell in
  a transaction or a ``VACUUM`` would, and commits a change of its own when it lets go. The bot's SQLite waits
  its busy timeout and then answers SQLITE_BUSY "database is locked". Only where the lock comes is staged: at
  a statement the bot has started (SQLite's trace hook), while a post to Discord is in flight (a listener
  holding the post), or as Replicate receives a create (the fake's request hook).
* Full disk (``tmpfs``): real, where this machine lets us mount (root): the data directory is a small
  tmpfs, filled with a file until the kernel answers ENOSPC; SQLite then answers SQLITE_FULL "database or disk
  is full" and the bot's file writes get ENOSPC. Freeing space is deleting that file. Skipped elsewhere.
* Full database without mounting: SQLite's ``PRAGMA max_page_count`` on the bot's connection. SQLite answers
  SQLITE_FULL, the same error a full disk gives, but only to writes that need a new page (a real full disk
  also refuses writes that only append to the WAL), so which in-place updates fail depends on how full the
  pages are: that test asserts only what holds either way.
* Damaged database file: real. Garbage over the pages of one index of the (closed) database file, as a
  failing disk leaves it (:func:`damage_page`); SQLite answers ``SELECT 1`` but SQLITE_CORRUPT "database disk
  image is malformed" to statements that need those pages, and ``PRAGMA quick_check`` finds it.
* Output files without mounting: ``RLIMIT_FSIZE`` lowered for this process, so writing the downloaded audio
  past the limit fails with the kernel's EFBIG ("File too large", not ENOSPC); the database stays under it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from bot.errors import StorageBusyError, StorageCorruptError, StorageError, StorageFullError
from bot.jobs.phase import Phase
from bot.records import JobStatus
from tests.fakes.audio import wav_info
from tests.fakes.replicate import FakeReplicate
from tests.faults._storage import (
    GatedListener,
    StatementWatch,
    WriteLock,
    check_database,
    damage_page,
    file_size_limit,
    health,
    leftovers,
    limit_database_pages,
    mount_tmpfs,
    page_count,
    sqlite_db,
    start_core,
    watching_logs,
)
from tests.faults.conftest import Reliability
from tests.integration.conftest import Harness
from tests.promparse import parse

BUSY = "Encore's storage is busy right now. Please try again in a minute."
FULL = "Encore's storage is full; an operator has been told. Please try again later."
DAMAGED = "Encore's storage is damaged; an operator has been told. Please try again later."


@pytest.fixture
async def harness(fake: FakeReplicate, tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(fake, tmp_path / "data")
    h.listener = GatedListener()
    yield h
    await h.stop()


def gated(harness: Harness) -> GatedListener:
    assert isinstance(harness.listener, GatedListener)
    return harness.listener


def database(harness: Harness) -> Path:
    return harness.data_dir / "encore.sqlite3"


# -- a short lock ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["IMMEDIATE", "EXCLUSIVE"])
async def test_a_lock_shorter_than_the_busy_timeout_is_waited_out(
    harness: Harness, fake: FakeReplicate, reliability: Reliability, mode: str
) -> None:
    """The bot's writes wait for another program's lock (default busy timeout, 5 s) and go on: no error."""
    await harness.start()
    assert harness.core is not None
    listener = gated(harness)
    lock = WriteLock(database(harness), mode=mode)
    statements = StatementWatch()
    await statements.attach(sqlite_db(harness))
    async with watching_logs() as logs:
        # Queued while locked: the admission's transaction has begun (so it waits for the lock before it checks
        # the quotas and inserts), and nothing else moves until the lock goes.
        await lock.acquire()
        since = statements.mark()
        creating = asyncio.create_task(harness.submit(duration_s=2))
        await statements.wait_for(r"^\s*BEGIN IMMEDIATE", since=since)
        assert not creating.done()
        await lock.release()
        job = await creating
        listener.hold.add(job.id)
        pid = await fake.wait_for_prediction()
        await listener.wait_for_phase(job.id, Phase.STARTING)

        # Running and succeeded, each recorded while another program holds the lock. (The card shows the
        # write went through before the lock is taken again: SQLite's busy handler polls, so a program that
        # takes the lock right back can starve it.) The first write a finished prediction makes is the fetch
        # lease its process takes (so that one process downloads it), then the status.
        running = rf"SET status = 'running'.* WHERE id = '{job.id}'"
        fetching = rf"INSERT INTO leases .*'fetch', '{job.id}'"
        for advance, first_write, phase in ((fake.begin, running, Phase.GENERATING), (fake.succeed, fetching, None)):
            await lock.acquire()
            since = statements.mark()
            await advance(pid)
            await statements.wait_for(first_write, since=since)
            if phase is not None:
                assert phase not in listener.phases[job.id]  # the card waits for the write
            await lock.release()
            if phase is not None:
                await listener.wait_for_phase(job.id, phase)

        # Delivered: the post went out, and its record waits for the lock.
        async with asyncio.timeout(10):
            assert await listener.at_gate.get() == job.id
        await lock.acquire()
        since = statements.mark()
        listener.open(job.id)
        await statements.wait_for(rf"SET status = 'delivered'.* WHERE id = '{job.id}'", since=since)
        assert Phase.DONE not in listener.phases[job.id]
        await lock.release()

        assert await listener.wait_for_phase(job.id) == Phase.DONE
        assert len(listener.deliveries_of(job.id)) == 1
        assert [r.getMessage() for r in logs.snapshot()] == []  # waited, never refused
    await harness.stop()
    verdict, changes, statuses = check_database(database(harness))
    assert (verdict, statuses) == ("ok", {"delivered": 1})
    assert sorted(changes) == sorted(lock.changes)  # the other program's changes are all there too
    reliability.record(
        jobs=1,
        faults=f"BEGIN {mode} from a second connection held across 4 writes (insert, running, the output's fetch "
        f"lease, delivered), {lock.held_s:.2f} s in all; busy timeout 5 s",
        outcomes=Counter({"delivered once": 1}),
    )


# -- a lock past the busy timeout, a full disk: one scenario ---------------------------------------------


FINISHING = 5  # jobs whose output arrives during the outage


@dataclass
class Outage:
    """A storage fault the scenario turns on at one moment (synchronously, from a request hook) and off."""

    start: Callable[[], None]
    end: Callable[[], object]  # may return an awaitable
    error: type[StorageError]
    message: str


async def run_outage(harness: Harness, fake: FakeReplicate, base: str, outage: Outage) -> Counter[str]:
    """Jobs at three stages meet the outage; new requests are refused; everything heals after it.

    * ``finishing``: at Replicate when the outage starts, finished during it (their outputs can't be stored);
    * ``posted``: being posted to Discord (the post is out, the record of it can't be written);
    * ``created``: being created at Replicate as the outage starts (the prediction exists, unrecorded).
    """
    listener = gated(harness)
    outcomes: Counter[str] = Counter()
    async with watching_logs() as logs:
        finishing = [await harness.submit(duration_s=2) for _ in range(FINISHING)]
        pids = [await fake.wait_for_prediction() for _ in finishing]
        for job in finishing:
            await listener.wait_for_phase(job.id, Phase.STARTING)
        posted = await harness.submit(duration_s=2)
        listener.hold.add(posted.id)
        await fake.succeed(await fake.wait_for_prediction())
        async with asyncio.timeout(10):
            assert await listener.at_gate.get() == posted.id

        started = False

        def start_once() -> bool:
            nonlocal started
            if not started:
                started = True
                outage.start()
            return False  # answered normally: the prediction is created

        fake.inject(method="POST", path=r"predictions$", status=None, times=None, when=lambda _: start_once())
        created = await harness.submit(duration_s=2)
        pid_created = await fake.wait_for_prediction()
        assert started
        began = time.monotonic()
        listener.open(posted.id)
        for pid in pids:
            await fake.succeed(pid)

        # New requests are refused with a clear reason; a batch is stored whole or not at all.
        for count in (1, 3):
            with pytest.raises(outage.error) as refused:
                await harness.submit(duration_s=2, count=count)
            assert refused.value.user_message == outage.message
            outcomes["refused at create"] += count
        status, body = await health(base)
        assert (status, body["checks"]["database"]) == (503, {"ok": False, "error": outage.error.kind})

        # Every stage met the fault, was logged with its job, and waits to try again.
        def all_refused() -> bool:
            return all(logs.about(job.id, "storage refused a write") for job in (*finishing, created)) and bool(
                logs.about(posted.id, "recording an outcome failed")
            )

        await logs.wait_for(all_refused)
        assert logs.containing(f"database writes are failing ({outage.error.kind})")  # the operator's alarm
        assert len(listener.deliveries_of(posted.id)) == 1

        ended = outage.end()
        if asyncio.iscoroutine(ended):
            await ended
        held_s = time.monotonic() - began
        fake.auto_advance = True  # the created job runs to the end as it is polled

        for job in (*finishing, created, posted):
            assert await listener.wait_for_phase(job.id, timeout=20) == Phase.DONE
            assert len(listener.deliveries_of(job.id)) == 1
            outcomes["delivered once"] += 1
        assert (await harness.job(created.id)).prediction_id == pid_created
        assert len(fake.predictions) == FINISHING + 2  # the unrecorded create was found, not made again
        assert (await health(base))[0] == 200

        # The loops lived through it: a new job goes all the way.
        after = await harness.submit(duration_s=2)
        assert await listener.wait_for_phase(after.id) == Phase.DONE
        outcomes["delivered once"] += 1

        assert not logs.containing("background task")  # no task died
        assert not logs.containing("crashed")
        assert leftovers(harness.data_dir) == []
    outcomes["outage_ms"] = round(held_s * 1000)
    return outcomes


async def test_a_lock_past_the_busy_timeout_loses_nothing(
    harness: Harness, fake: FakeReplicate, reliability: Reliability
) -> None:
    base = await start_core(harness, storage={"busy_timeout_ms": 100})
    lock = WriteLock(database(harness), mode="EXCLUSIVE")
    outage = Outage(lock.hold_now, lock.release, StorageBusyError, BUSY)
    outcomes = await run_outage(harness, fake, base, outage)
    await harness.stop()
    verdict, changes, statuses = check_database(database(harness))
    assert (verdict, statuses) == ("ok", {"delivered": FINISHING + 3})  # the refused requests left nothing
    assert changes == lock.changes
    held_s = outcomes.pop("outage_ms") / 1000
    reliability.record(
        jobs=FINISHING + 7,
        faults=f"BEGIN EXCLUSIVE from a second connection for {held_s:.1f} s past a 100 ms busy timeout, taken as "
        f"Replicate received a create, with a post in flight and {FINISHING} outputs arriving",
        outcomes=outcomes,
    )


async def test_a_full_disk_loses_nothing(harness: Harness, fake: FakeReplicate, reliability: Reliability) -> None:
    with mount_tmpfs(harness.data_dir, 16 * 1024 * 1024) as disk:
        base = await start_core(harness)
        filled: list[tuple[int, int]] = []  # (filler bytes, bytes still free)
        outage = Outage(lambda: filled.append((disk.fill(), disk.free_bytes())), disk.free, StorageFullError, FULL)
        outcomes = await run_outage(harness, fake, base, outage)
        [(filler, free)] = filled
        assert free == 0
        await harness.stop()
        verdict, _, statuses = check_database(database(harness))
    assert (verdict, statuses) == ("ok", {"delivered": FINISHING + 3})
    held_s = outcomes.pop("outage_ms") / 1000
    reliability.record(
        jobs=FINISHING + 7,
        faults=f"a 16 MiB tmpfs data directory filled to ENOSPC ({filler // 1024} KiB of filler) for "
        f"{held_s:.1f} s, as Replicate received a create, with a post in flight and {FINISHING} outputs arriving",
        outcomes=outcomes,
    )


# -- without mounting: SQLite's page limit, the process's file size limit ----------------------------------


async def test_a_full_database_refuses_new_jobs_clearly_and_heals(
    harness: Harness, fake: FakeReplicate, reliability: Reliability
) -> None:
    base = await start_core(harness, limits={"replicate_jobs_in_flight": 1})
    assert harness.core is not None
    db = sqlite_db(harness)
    listener = gated(harness)
    first = await harness.submit(duration_s=2)
    pid = await fake.wait_for_prediction()
    await listener.wait_for_phase(first.id, Phase.STARTING)

    # The database may not grow any more. Requests are taken while their rows fit in the pages there are
    # (they queue behind the first job, which writes nothing while it waits at Replicate), then refused.
    await limit_database_pages(db, await page_count(db))
    accepted = []
    refused: StorageFullError | None = None
    for _ in range(50):
        try:
            accepted.append(await harness.submit(duration_s=2))
        except StorageFullError as exc:
            refused = exc
            break
    assert refused is not None, "50 jobs fitted in a database that may not grow"
    assert refused.user_message == FULL
    status, body = await health(base)
    assert (status, body["checks"]["database"]) == (503, {"ok": False, "error": "full"})
    await fake.succeed(pid)  # its output arrives; recording it may or may not need a new page

    await limit_database_pages(db, None)
    fake.auto_advance = True
    for job in (first, *accepted):
        assert await listener.wait_for_phase(job.id, timeout=20) == Phase.DONE
        assert len(listener.deliveries_of(job.id)) == 1
    assert (await health(base))[0] == 200
    await harness.stop()
    verdict, _, statuses = check_database(database(harness))
    assert (verdict, statuses) == ("ok", {"delivered": 1 + len(accepted)})
    reliability.record(
        jobs=2 + len(accepted),
        faults="PRAGMA max_page_count at the database's size (SQLITE_FULL), then lifted",
        outcomes=Counter({"delivered once": 1 + len(accepted), "refused at create": 1}),
    )


async def test_output_past_a_file_size_limit_waits_for_room(
    harness: Harness, fake: FakeReplicate, reliability: Reliability
) -> None:
    limit = 512 * 1024
    await harness.start()
    listener = gated(harness)
    async with watching_logs() as logs:
        job = await harness.submit(duration_s=10)  # 10 s of 32 kHz stereo WAV: 1.25 MiB
        pid = await fake.wait_for_prediction()
        await listener.wait_for_phase(job.id, Phase.STARTING)
        with file_size_limit(limit):
            await fake.succeed(pid)
            await logs.wait_for(lambda: len(logs.about(job.id, "storage refused a write")) >= 2)
            assert logs.containing("no room to write")  # the operator's alarm
            refusals = len(logs.about(job.id, "storage refused a write"))
            sizes = {p.name: p.stat().st_size for p in harness.data_dir.glob("encore.sqlite3*")}
            assert max(sizes.values()) < limit, sizes  # the database is not what the limit stops
        assert await listener.wait_for_phase(job.id, timeout=20) == Phase.DONE
    assert leftovers(harness.data_dir) == []  # every refused download threw its partial file away
    [delivered] = listener.deliveries_of(job.id)
    assert round(wav_info(delivered.data).duration_s) == 10
    assert (await harness.job(job.id)).status == JobStatus.DELIVERED
    await harness.stop()
    verdict, _, statuses = check_database(database(harness))
    assert (verdict, statuses) == ("ok", {"delivered": 1})
    reliability.record(
        jobs=1,
        faults=f"RLIMIT_FSIZE {limit // 1024} KiB while a 1.25 MiB output arrived (EFBIG, {refusals} refused writes)",
        outcomes=Counter({"delivered once": 1}),
    )


# -- a damaged database file ---------------------------------------------------------------------------------


async def a_database_with_a_delivered_job(harness: Harness, fake: FakeReplicate) -> None:
    """A database with real rows in it, then the bot stopped (its WAL checkpointed into the file)."""
    fake.auto_advance = True
    await start_core(harness)
    job = await harness.submit(duration_s=2)
    assert await harness.listener.wait_for_phase(job.id) == Phase.DONE
    assert len(harness.listener.deliveries_of(job.id)) == 1
    await harness.stop()


async def test_a_damaged_database_is_found_at_startup_and_reported(
    harness: Harness, fake: FakeReplicate, reliability: Reliability
) -> None:
    await a_database_with_a_delivered_job(harness, fake)
    damage_page(database(harness), "jobs_user_created")
    async with watching_logs() as logs:
        base = await start_core(harness)
        status, body = await health(base)
    assert (status, body["checks"]["database"]) == (503, {"ok": False, "error": "corrupt"})
    assert [r for r in logs.containing("is damaged") if r.levelname == "ERROR"]
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
        http.get(f"{base}/metrics") as response,
    ):
        exposition = parse(await response.text())
    assert exposition.value("encore_database_corrupt") == 1
    with pytest.raises(StorageCorruptError) as refused:
        await harness.submit(duration_s=2)
    assert refused.value.user_message == DAMAGED
    reliability.record(
        jobs=2,
        faults="garbage over an index's root page of the closed database file, then a restart",
        outcomes=Counter({"delivered once": 1, "refused at create": 1}),
    )


async def test_writes_that_meet_damaged_pages_make_healthz_say_corrupt(harness: Harness, fake: FakeReplicate) -> None:
    await a_database_with_a_delivered_job(harness, fake)
    damage_page(database(harness), "jobs_user_created")
    base = await start_core(harness, storage={"integrity_check_s": 0})  # no quick_check: only statements tell
    assert (await health(base))[0] == 200  # SELECT 1 works on a damaged file
    with pytest.raises(StorageCorruptError):
        await harness.submit(duration_s=2)  # the insert needs the damaged index
    status, body = await health(base)
    assert (status, body["checks"]["database"]) == (503, {"ok": False, "error": "corrupt"})
