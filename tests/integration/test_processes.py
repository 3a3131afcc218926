"""Several Encore processes on one PostgreSQL database (issue 14): any process finishes any job, exactly once.

Each process is a real core with a connection pool, notifier, web server, job service and leases of its own
(``tests/integration/processes.py``; the crash tests run one on an event loop of its own, so that it can stop
dead as SIGKILL stops it). They share the database, the fake Replicate and a files directory (the volume every
replica mounts). Leases are short where a test waits for one to run out.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bot.app import Core
from bot.errors import BotError, NotAllowedError
from bot.guild_settings import GuildSettings
from bot.jobs.leases import Kind
from bot.jobs.phase import Phase
from bot.jobs.retention import DAY_S, Janitor
from bot.records import Job, JobStatus
from bot.storage.leases_repo import LeasesRepo
from bot.storage.notify import Notice, Notifier
from tests.conftest import StorageBackend
from tests.fakes.elevenlabs import FakeElevenLabs
from tests.fakes.listener import RecordingListener
from tests.fakes.replicate import FakeReplicate
from tests.integration.conftest import Harness
from tests.integration.processes import EncoreProcess

pytestmark = pytest.mark.parametrize("backend", ["postgres"], indirect=True)

WAIT_S = 20.0


class Heard:
    """Notices one process heard on a channel, after its own handlers of them ran (they subscribed first)."""

    def __init__(self, notifier: Notifier, channel: str) -> None:
        self._notices: asyncio.Queue[Notice] = asyncio.Queue()
        notifier.subscribe(channel, self._notices.put)

    async def next(self) -> Notice:
        async with asyncio.timeout(WAIT_S):
            return await self._notices.get()


class LogLine(logging.Handler):
    """Awaits a log line containing ``text`` from ``logger`` (any process in this test: they share logging)."""

    def __init__(self, logger: str, text: str) -> None:
        super().__init__(logging.DEBUG)
        self._text = text
        self._logger = logging.getLogger(logger)
        self._seen = threading.Event()
        self._previous_level = self._logger.level

    def emit(self, record: logging.LogRecord) -> None:
        if self._text in record.getMessage():
            self._seen.set()

    def __enter__(self) -> LogLine:
        self._logger.addHandler(self)
        self._logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._previous_level)

    async def wait(self) -> None:
        assert await asyncio.to_thread(self._seen.wait, WAIT_S), f"no log line with {self._text!r}"


# A process that looks at the shared queue only every half minute: it leaves the jobs another admits to that one.
SELDOM_LOOKS = {"queue_check_s": 30.0, "process_timeout_s": 90.0}


@dataclass
class Cluster:
    """Processes on one database, in this loop (each a core of its own), stopped at the end of the test."""

    fake: FakeReplicate
    backend: StorageBackend
    tmp_path: Path
    shared_files: Path  # the files directory every process mounts ([storage] files_dir)
    started: list[Harness] = field(default_factory=list)

    async def start(
        self, *, listener: RecordingListener | None = None, with_webhooks: bool = False, **sections: dict[str, Any]
    ) -> Harness:
        """One more process: its own data directory, the shared files directory. Any process may take a waiting
        job's turn (the fair scheduler), so that the one a test submits to starts its jobs, the others look at the
        queue only rarely (what these tests are about comes after the start)."""
        harness = Harness(self.fake, self.tmp_path / f"process-{len(self.started)}", self.backend)
        if listener is not None:
            harness.listener = listener
        storage = {"files_dir": str(self.shared_files), **sections.pop("storage", {})}
        if self.started:
            sections["jobs"] = {**SELDOM_LOOKS, **sections.get("jobs", {})}
        self.started.append(harness)
        await harness.start(with_webhooks=with_webhooks, storage=storage, **sections)
        return harness

    async def pair(self) -> tuple[Harness, Harness, Core, Core]:
        """Two processes polling (and their cores)."""
        a, b = await self.start(), await self.start()
        assert a.core is not None
        assert b.core is not None
        return a, b, a.core, b.core


@pytest.fixture
async def cluster(fake: FakeReplicate, backend: StorageBackend, tmp_path: Path) -> AsyncIterator[Cluster]:
    cluster = Cluster(fake, backend, tmp_path, tmp_path / "shared-files")
    yield cluster
    for harness in cluster.started:
        await harness.stop()


def webhook_url(harness: Harness) -> str:
    assert harness.settings is not None
    assert harness.settings.webhooks.public_url is not None
    return str(harness.settings.webhooks.public_url).rstrip("/") + harness.settings.webhooks.path


async def stored(harness: Harness, job_id: str) -> Job:
    return await harness.job(job_id)


# -- any process finishes any job ------------------------------------------------------------------------------


async def test_a_job_started_on_one_process_is_delivered_once_by_the_one_its_webhook_reaches(
    cluster: Cluster, fake: FakeReplicate
) -> None:
    """Behind a load balancer, the webhook of a job A started reaches B: B fetches the output into the shared
    files and delivers it; A, hearing of it later (its own webhook), does nothing more."""
    a = await cluster.start(with_webhooks=True)
    b = await cluster.start(with_webhooks=True)
    job = await a.submit(duration_s=3)
    pid = await fake.wait_for_prediction()
    await a.listener.wait_for_phase(job.id, Phase.STARTING, timeout=WAIT_S)  # A recorded the submission
    fake.hold_webhooks(pid)  # A's own webhooks come late
    await fake.succeed(pid)
    assert await fake.send_webhook(pid, url=webhook_url(b)) == 200
    assert await b.listener.wait_for_phase(job.id, timeout=WAIT_S) == Phase.DONE
    [delivered] = b.listener.deliveries_of(job.id)
    assert delivered.data
    record = await stored(a, job.id)
    assert record.status == JobStatus.DELIVERED
    assert record.output_path is not None
    assert Path(record.output_path).is_relative_to(cluster.shared_files)  # where every process reads it
    fake.release_webhooks(pid)
    await fake.drain_webhooks(timeout=WAIT_S)
    assert a.listener.delivered == []
    assert len(b.listener.delivered) == 1


async def test_a_job_finished_by_another_process_frees_its_place_at_the_provider_here(
    cluster: Cluster, fake: FakeReplicate
) -> None:
    """A may have one Replicate job in flight. Its job is finished by B (the webhook reached B); A's next poll
    finds it over and frees its place, so A's next job starts."""
    a = await cluster.start(with_webhooks=True, jobs={"webhook_grace_s": 0.2}, limits={"replicate_jobs_in_flight": 1})
    b = await cluster.start(with_webhooks=True)
    first = await a.submit(duration_s=2)
    pid = await fake.wait_for_prediction()
    await a.listener.wait_for_phase(first.id, Phase.STARTING, timeout=WAIT_S)
    fake.hold_webhooks(pid)
    await fake.succeed(pid)
    assert await fake.send_webhook(pid, url=webhook_url(b)) == 200
    assert await b.listener.wait_for_phase(first.id, timeout=WAIT_S) == Phase.DONE
    second = await a.submit(duration_s=2)  # waits for A's one place
    assert await fake.wait_for_prediction(timeout=WAIT_S)
    await a.listener.wait_for_phase(second.id, Phase.STARTING, timeout=WAIT_S)
    fake.release_webhooks(pid)


async def test_a_webhook_at_one_process_and_a_poll_at_another_fetch_and_deliver_once(
    cluster: Cluster, fake: FakeReplicate
) -> None:
    """A polls its job while B hears its webhook, at the same moment: one of them fetches the output (the other
    is refused the job's fetch lease, and downloads nothing), and the track is delivered once, intact."""
    listener = RecordingListener()  # both processes report to one Discord
    a = await cluster.start(listener=listener)  # polls
    b = await cluster.start(listener=listener, with_webhooks=True)
    job = await a.submit(duration_s=3)
    pid = await fake.wait_for_prediction()
    await listener.wait_for_phase(job.id, Phase.STARTING, timeout=WAIT_S)  # A recorded the submission
    fake.hold_downloads(pid)  # a slow file server: both processes are in the middle at once
    with LogLine("bot.jobs.outputs", "another process is fetching its output") as refused:
        await fake.succeed(pid)
        assert await fake.send_webhook(pid, url=webhook_url(b)) == 200
        await fake.next_request("GET", f"/delivery/{pid}/", timeout=WAIT_S)
        await refused.wait()  # the other process tried too, and was refused
    fake.release_downloads(pid)
    assert await listener.wait_for_phase(job.id, timeout=WAIT_S) == Phase.DONE
    assert fake.count("GET", f"/delivery/{pid}/") == 1
    [delivered] = listener.deliveries_of(job.id)
    assert delivered.data
    assert (await stored(a, job.id)).status == JobStatus.DELIVERED


async def test_a_job_waiting_for_its_webhook_stays_with_its_process(cluster: Cluster, fake: FakeReplicate) -> None:
    """With webhooks on, A polls a new job only after a grace period: it holds the job's poll lease from its
    submission on, so B's rounds don't take it for one whose process is gone."""
    a = await cluster.start(with_webhooks=True)
    job = await a.submit()
    await fake.wait_for_prediction()
    await a.listener.wait_for_phase(job.id, Phase.STARTING, timeout=WAIT_S)  # submitted; first poll a minute away
    b = await cluster.start()  # (after A took the job's turn: either process may take a waiting job's)
    assert await b.service.adopt_orphans() == 0


class SlowListener(RecordingListener):
    """A Discord that takes its time over this process's deliveries, until told to go on."""

    def __init__(self) -> None:
        super().__init__()
        self.posting = asyncio.Event()
        self.go = asyncio.Event()

    async def deliver(self, jobs: Sequence[Job]) -> int | None:
        self.posting.set()
        await self.go.wait()
        return await super().deliver(jobs)


async def test_a_process_starting_while_another_delivers_leaves_that_delivery_alone(
    cluster: Cluster, fake: FakeReplicate
) -> None:
    """B starts (and takes up every finished job nobody is delivering) while A is posting a track: A holds the
    card's delivery lease, so B leaves it; A's post is the only one."""
    a = await cluster.start(listener=SlowListener())
    assert isinstance(a.listener, SlowListener)
    job = await a.submit(duration_s=2)
    await fake.succeed(await fake.wait_for_prediction())
    async with asyncio.timeout(WAIT_S):
        await a.listener.posting.wait()
    with LogLine("bot.jobs.dispatch", f"card {job.id} is being delivered by another process") as left:
        b = await cluster.start()
        await left.wait()
    assert b.listener.delivery_attempts == 0
    a.listener.go.set()
    assert await a.listener.wait_for_phase(job.id, timeout=WAIT_S) == Phase.DONE
    assert len(a.listener.deliveries_of(job.id)) == 1
    assert b.listener.delivered == []


async def test_another_process_clean_up_keeps_a_file_that_waits_to_be_posted(
    cluster: Cluster, fake: FakeReplicate
) -> None:
    """B's clean-up runs (a month later, by its clock, with the file as old) while A is posting a track from the
    shared files: a file of a job not yet delivered is never deleted, whoever downloaded it."""
    a = await cluster.start(listener=SlowListener(), storage={"keep_files_days": 1})
    b = await cluster.start(storage={"keep_files_days": 1})
    assert isinstance(a.listener, SlowListener)
    assert b.core is not None
    assert b.settings is not None
    job = await a.submit(duration_s=2)
    await fake.succeed(await fake.wait_for_prediction())
    async with asyncio.timeout(WAIT_S):
        await a.listener.posting.wait()
    track = Path((await stored(b, job.id)).output_path or "")
    month_ago = time.time() - 30 * DAY_S
    os.utime(track, (month_ago, month_ago))
    janitor = Janitor(b.core.repo, b.settings.storage, clock=lambda: time.time() + 30 * DAY_S)
    await janitor.sweep()
    assert track.exists()
    a.listener.go.set()
    assert await a.listener.wait_for_phase(job.id, timeout=WAIT_S) == Phase.DONE
    [delivered] = a.listener.deliveries_of(job.id)
    assert delivered.data == track.read_bytes()


# -- a process that dies loses nothing ------------------------------------------------------------------------


class StuckListener(RecordingListener):
    """A Discord that never answers this process's delivery (it dies while posting)."""

    def __init__(self) -> None:
        super().__init__()
        self.posting = threading.Event()

    async def deliver(self, jobs: Sequence[Job]) -> int | None:
        self.posting.set()
        await asyncio.Event().wait()  # never answered
        raise AssertionError("unreachable")


async def test_jobs_of_a_process_that_dies_are_polled_and_delivered_by_another_once(
    fake: FakeReplicate, backend: StorageBackend, tmp_path: Path
) -> None:
    """A polls three jobs and is posting a fourth when it dies (its loop stops dead, its connections are cut;
    it gives nothing up). B, running beside it all along, leaves A's jobs alone while A lives, takes them over
    once A's leases run out, and delivers each exactly once: the three it polls to the end, and the one A died
    posting."""
    settings: dict[str, Any] = {"jobs": {"lease_s": 1.0}, "storage": {"files_dir": str(tmp_path / "shared-files")}}
    a = EncoreProcess("a", fake, tmp_path / "a", backend)
    b = EncoreProcess("b", fake, tmp_path / "b", backend)
    a.harness.listener = stuck = StuckListener()
    try:
        await a.call(a.harness.start(**settings))
        await b.call(b.harness.start(**{**settings, "jobs": {**settings["jobs"], **SELDOM_LOOKS}}))
        posting = await a.call(a.harness.submit("posting when A dies", duration_s=2))
        first = await fake.wait_for_prediction()
        await fake.succeed(first)
        assert await asyncio.to_thread(stuck.posting.wait, WAIT_S)  # A is posting it
        running = [await a.call(a.harness.submit(f"track {n}", duration_s=2)) for n in range(3)]
        pids = [await fake.wait_for_prediction() for _ in running]
        for pid in pids:
            await fake.begin(pid)
        for job in running:  # A polls them: they show as being made
            await a.call(stuck.wait_for_phase(job.id, Phase.GENERATING, timeout=WAIT_S))
        assert b.harness.core is not None
        leases = LeasesRepo(b.harness.core.db)
        for job in running:  # A holds them (B, alive beside it, never took one)
            holder = await b.call(leases.holder_of(Kind.POLL, job.id, now=time.time()))
            assert holder == a.harness.service.holder
        assert b.harness.listener.delivered == []

        await a.crash()
        for pid in pids:
            await fake.succeed(pid)
        for job in [posting, *running]:
            assert await b.call(b.harness.listener.wait_for_phase(job.id, timeout=WAIT_S)) == Phase.DONE
            assert len(b.harness.listener.deliveries_of(job.id)) == 1
            assert (await b.call(b.harness.job(job.id))).status == JobStatus.DELIVERED
        assert stuck.delivered == []
        assert len(fake.predictions) == 4  # taken over, never submitted again
    finally:
        for process in (a, b):
            await asyncio.to_thread(process.close)


async def test_a_long_call_is_left_to_its_process_while_it_lives_and_interrupted_once_it_dies(
    fake: FakeReplicate, backend: StorageBackend, tmp_path: Path
) -> None:
    """A song (one long call to ElevenLabs) is being made by A. B starting beside it leaves it alone (it used to
    fail every unfinished call at its start, as if it were the only process); when A dies, B fails it as
    interrupted (with Retry, not run again by itself: it costs money) once A's lease has run out."""
    async with FakeElevenLabs(default_length_ms=5000) as eleven:
        settings: dict[str, Any] = {
            "jobs": {"lease_s": 1.0},
            "elevenlabs": {"api_base": eleven.base_url, "retry_base_s": 0.01},
        }
        a = EncoreProcess("a", fake, tmp_path / "a", backend)
        b = EncoreProcess("b", fake, tmp_path / "b", backend)
        for process in (a, b):
            process.harness.elevenlabs_key = eleven.api_key
        try:
            hold = eleven.hold(path="/v1/music/detailed")
            await a.call(a.harness.start(**settings))
            song = await a.call(a.harness.submit("a song", model="song", duration_s=4))
            await hold.wait_held(timeout=WAIT_S)
            await b.call(b.harness.start(**settings))
            assert b.harness.core is not None
            leases = LeasesRepo(b.harness.core.db)
            assert await b.call(b.harness.service.adopt_orphans()) == 0  # a round of B's keeper, now
            assert await b.call(leases.holder_of(Kind.CALL, song.id, now=time.time())) == a.harness.service.holder
            assert (await b.call(b.harness.job(song.id))).status == JobStatus.SUBMITTED

            await a.crash()
            assert await b.call(b.harness.listener.wait_for_phase(song.id, timeout=WAIT_S)) == Phase.FAILED
            failed = await b.call(b.harness.job(song.id))
            assert failed.error is not None
            assert "Interrupted" in failed.error
            assert len(eleven.generations) == 1  # not made again by itself
            hold.release()
        finally:
            for process in (a, b):
                await asyncio.to_thread(process.close)


async def test_a_clean_stop_hands_its_jobs_over_at_once(cluster: Cluster, fake: FakeReplicate) -> None:
    """A rolling restart: A stops cleanly with a job in flight, giving its leases up and saying so; B takes the
    job over at once (long before a lease of the default 30 s could run out) and delivers it."""
    a, b, _, _ = await cluster.pair()
    job = await a.submit(duration_s=2)
    pid = await fake.wait_for_prediction()
    await fake.begin(pid)
    await a.listener.wait_for_phase(job.id, Phase.GENERATING, timeout=WAIT_S)
    await a.stop()
    await fake.succeed(pid)
    assert await b.listener.wait_for_phase(job.id, timeout=5.0) == Phase.DONE
    assert len(b.listener.deliveries_of(job.id)) == 1


# -- pause, server settings and reloads reach every process ------------------------------------------------------


async def test_a_pause_in_one_process_refuses_new_jobs_in_every_other_at_once(cluster: Cluster) -> None:
    a, b, a_core, b_core = await cluster.pair()
    b_heard, a_heard = Heard(b_core.notifier, "pause"), Heard(a_core.notifier, "pause")
    await a.service.pause_jobs(by=7)
    assert not (await b_heard.next()).missed
    assert b.service.paused
    with pytest.raises(BotError, match="paused"):
        await b.submit()
    await b.service.resume_jobs()
    while a.service.paused:
        await a_heard.next()
    await a.submit()


async def test_a_lost_listening_connection_is_made_again_and_a_pause_sent_meanwhile_arrives(cluster: Cluster) -> None:
    a, b, _, b_core = await cluster.pair()
    heard = Heard(b_core.notifier, "pause")
    listening = getattr(b_core.notifier, "backend_pid", None)
    assert listening is not None
    admin = await asyncpg.connect(cluster.backend.url)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", listening)
    finally:
        await admin.close()
    await a.service.pause_jobs(by=7)  # while B may not be listening
    while not b.service.paused:
        await heard.next()  # the notice, or B's "read everything again" once it listens again
    with pytest.raises(BotError, match="paused"):
        await b.submit()


async def test_a_server_settings_change_in_one_process_applies_in_every_other(cluster: Cluster) -> None:
    a, b, _, b_core = await cluster.pair()
    heard = Heard(b_core.notifier, "guild_settings")
    assert await b.service.guild_settings(1) == GuildSettings()  # read, and kept in B's memory
    await b.submit()  # channel 2 of server 1 is allowed
    await a.service.save_guild_settings(1, GuildSettings(channels=[999]), by=7)
    assert (await heard.next()).payload == "1"
    assert (await b.service.guild_settings(1)).channels == [999]
    with pytest.raises(NotAllowedError):
        await b.submit()


async def test_a_reload_in_one_process_has_every_other_read_its_config_again(cluster: Cluster, tmp_path: Path) -> None:
    _, b, a_core, b_core = await cluster.pair()
    b_core.config_path = tmp_path / "b-config.toml"
    b_core.config_path.write_text("[limits]\nuser_daily_jobs = 7\n[jobs]\nretry_s = 9.0\n", encoding="utf-8")
    heard = Heard(b_core.notifier, "reload")
    await a_core.announce_reload(by=7)
    assert not (await heard.next()).missed
    assert b.service.settings.limits.user_daily_jobs == 7
    assert b_core.settings.jobs.retry_s == 9.0
    assert b_core.settings.storage.files_dir == cluster.shared_files  # only the reloadable sections change
    assert a_core.settings.limits.user_daily_jobs != 7  # A had reloaded its own already
