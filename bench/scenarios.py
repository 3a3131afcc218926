"""The measurements. Each scenario starts a fresh Encore process on a fresh data directory."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from bench.world import World, percentile
from bot.config import Settings
from bot.records import JobOrigin, JobRequest, JobStatus
from bot.storage.db import Database
from bot.storage.jobs_repo import JobsRepo
from tests.fakes._http import RecordedRequest
from tests.fakes.audio import make_wav
from tests.fakes.discord.handles import InteractionHandle
from tests.fakes.discord.models import SimMessage
from tests.fakes.replicate import RunTiming

WAV_30S = make_wav(30, sample_rate=32000, channels=2)  # 3.8 MB: MusicGen's stereo output, fits 10 MiB
WAV_60S_48K = make_wav(60, sample_rate=48000, channels=2)  # 11.5 MB: must be re-encoded for 10 MiB
WAV_5S = make_wav(5, sample_rate=32000, channels=2)

# How long the fake's predictions run (each prediction its own seeded time; see tests/fakes/replicate/timing.py).
# A 30 s MusicGen track is a bar of 1503 steps. Webhook mode measures what follows "succeeded": short runs.
# Poll mode measures how soon a poller learns of the end: runs of about 4 to 20 s, in the shape of real ones
# (a queue, set-up, a bar whose speed varies between runs and within one, a time after the full bar).
WEBHOOK_RUNS = RunTiming(
    seed=1, queue_s=(0.05, 0.2), setup_s=(0.05, 0.2), rate_it_s=2500.0, rate_spread=0.4, after_bar_s=0.1
)
POLL_RUNS = RunTiming(seed=1, rate_it_s=150.0, rate_spread=0.35)

T = TypeVar("T")
_PREDICTION_PATH = re.compile(r"^/v1/predictions/([a-z0-9]+)$")


async def for_each(items: Iterable[T], work: Callable[[T], Awaitable[None]], *, workers: int) -> None:
    """Run ``work`` on every item, ``workers`` at a time, in order of the items."""
    waiting = deque(items)

    async def worker() -> None:
        while waiting:
            await work(waiting.popleft())

    await asyncio.gather(*(worker() for _ in range(workers)))


def musicgen_version() -> str:
    return Settings().models.musicgen.ref.partition(":")[2]


def classify(path: str, method: str) -> str:
    if method == "POST" and path.endswith("/predictions"):
        return "create"
    if method == "GET" and _PREDICTION_PATH.match(path):
        return "get"
    if path.startswith("/delivery/") or path.endswith("/download"):
        return "download"
    if path.endswith("/cancel"):
        return "cancel"
    return "other"


@dataclass
class Overhead:
    label: str
    mode: str
    jobs: int
    overhead_ms: list[float] = field(default_factory=list)  # provider "succeeded" -> audio message in Discord
    to_upload_ms: list[float] = field(default_factory=list)  # provider "succeeded" -> the upload starts arriving
    notice_ms: list[float] = field(default_factory=list)  # provider "succeeded" -> Encore learns of it
    cpu_ms_per_job: float = 0.0
    audio_cpu_ms_per_job: float = 0.0
    idle_cpu_ms_per_s: float = 0.0
    peak_rss_mb: float = 0.0
    requests: Counter[str] = field(default_factory=Counter)
    startup_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "mode": self.mode,
            "jobs": self.jobs,
            "overhead_p50_ms": round(percentile(self.overhead_ms, 50), 1),
            "overhead_p99_ms": round(percentile(self.overhead_ms, 99), 1),
            "overhead_max_ms": round(max(self.overhead_ms), 1),
            "to_upload_p50_ms": round(percentile(self.to_upload_ms, 50), 1),
            "to_upload_p99_ms": round(percentile(self.to_upload_ms, 99), 1),
            "notice_p50_ms": round(percentile(self.notice_ms, 50), 1),
            "notice_p99_ms": round(percentile(self.notice_ms, 99), 1),
            "cpu_ms_per_job": round(self.cpu_ms_per_job, 1),
            "audio_cpu_ms_per_job": round(self.audio_cpu_ms_per_job, 1),
            "cpu_ms_per_job_without_audio": round(self.cpu_ms_per_job - self.audio_cpu_ms_per_job, 1),
            "idle_cpu_ms_per_s": round(self.idle_cpu_ms_per_s, 2),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "provider_requests_per_job": {k: round(v / self.jobs, 2) for k, v in sorted(self.requests.items())},
            "provider_requests_per_job_total": round(sum(self.requests.values()) / self.jobs, 2),
            "startup_s": round(self.startup_s, 2),
        }


@dataclass
class TimedJob:
    handle: InteractionHandle
    prediction_id: str
    succeeded_at: float  # perf_counter when the fake Replicate marked the prediction succeeded
    file_at: float  # perf_counter when the audio appeared in Discord


def _card_done(message: SimMessage) -> bool:
    return any(
        field.get("name") == "Status" and "Done" in str(field.get("value"))
        for embed in message.embeds
        for field in embed.get("fields", [])
    )


async def cards_done(handles: Iterable[InteractionHandle], *, timeout_s: float = 60.0) -> None:
    """Until every job card shows Done: its last edit, and the waveform drawn for it, are part of the job's
    cost, and a card's news may wait out ``card_edit_interval_s`` after the file is posted."""
    await asyncio.gather(*(handle.wait_original(_card_done, timeout_s=timeout_s) for handle in handles))


async def generate_one(world: World, i: int, prompt: str) -> TimedJob:
    """``/music generate`` from user ``i`` (round robin) for 30 s; the prediction runs by itself."""
    handle = await world.users[i % len(world.users)].slash("music generate", prompt=prompt, duration=30)
    pid = await world.prediction_for(prompt)
    succeeded_at = await world.succeeded_at(pid)  # the model runs
    return TimedJob(handle, pid, succeeded_at, await world.file_time(handle, timeout_s=300))


def _notices(world: World, t0: dict[str, float], mode: str, since: int) -> list[float]:
    """Per prediction: from "succeeded" to the first answer that told the client (webhook 2xx or GET)."""
    notices: list[float] = []
    for pid, start in t0.items():
        if mode == "webhook":
            times = [
                d.at
                for d in world.fake.webhook_deliveries
                if d.prediction_id == pid
                and d.status_code is not None
                and 200 <= d.status_code < 300
                and d.at >= start
                and b'"succeeded"' in d.body
            ]
        else:
            times = [r.at for r in world.fake.requests[since:] if r.path == f"/v1/predictions/{pid}" and r.at >= start]
        if times:
            notices.append((min(times) - start) * 1000)
    return notices


async def overhead(
    world: World,
    *,
    label: str,
    mode: str,
    output: bytes,
    jobs: int,
    concurrency: int,
    timing: RunTiming,
) -> Overhead:
    """Jobs through Discord: each prediction runs by itself for its own time (``timing``); from its "succeeded",
    we time the rest."""
    result = Overhead(label, mode, jobs)
    world.use_output(output)
    world.fake.timing = timing
    data_dir = world.workdir / f"data-{label}-{mode}"
    result.startup_s = await world.start_bot(world.bot_env(webhooks=mode == "webhook", data_dir=data_dir))
    bot = world.bot
    assert bot is not None
    idle_from, idle_cpu = time.perf_counter(), bot.cpu_s()
    await asyncio.sleep(2.0)  # idle: what the bot costs when nothing happens
    result.idle_cpu_ms_per_s = (bot.cpu_s() - idle_cpu) * 1000 / (time.perf_counter() - idle_from)

    req_from, cpu_from, audio_from = len(world.fake.requests), bot.cpu_s(), await bot.audio_cpu_s()
    t0: dict[str, float] = {}

    handles: list[InteractionHandle] = []

    async def one(i: int) -> None:
        job = await generate_one(world, i, f"{label} {mode} {i}")
        handles.append(job.handle)
        t0[job.prediction_id] = start = job.succeeded_at
        result.overhead_ms.append((job.file_at - start) * 1000)
        result.to_upload_ms.append((world.upload_started(job.handle) - start) * 1000)

    await for_each(range(jobs), one, workers=concurrency)
    await cards_done(handles)
    result.cpu_ms_per_job = (bot.cpu_s() - cpu_from) * 1000 / jobs
    result.audio_cpu_ms_per_job = (await bot.audio_cpu_s() - audio_from) * 1000 / jobs
    result.peak_rss_mb = bot.peak_rss_mb()
    result.requests = Counter(classify(r.path, r.method) for r in world.fake.requests[req_from:])
    result.notice_ms = _notices(world, t0, mode, req_from)
    await world.stop_bot()
    return result


def side_by_side(encore: dict[str, Any], official: dict[str, Any]) -> dict[str, Any]:
    """Encore's poll mode and the official client on the same runs: how soon each learns of "succeeded" and how
    many requests each makes per job (Encore's count includes downloading the output; the client's doesn't)."""

    def row(summary: dict[str, Any]) -> dict[str, Any]:
        keys = ("notice_p50_ms", "notice_p99_ms", "provider_requests_per_job", "provider_requests_per_job_total")
        return {key: summary[key] for key in keys}

    return {"encore_poll": row(encore), "official_client": row(official)}


@dataclass
class Official:
    jobs: int
    poll_interval_s: float
    concurrency: int = 4
    notice_ms: list[float] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            "jobs_at_once": self.concurrency,
            "poll_interval_s": self.poll_interval_s,
            "notice_p50_ms": round(percentile(self.notice_ms, 50), 1),
            "notice_p99_ms": round(percentile(self.notice_ms, 99), 1),
            "provider_requests_per_job": {k: round(v / self.jobs, 2) for k, v in sorted(self.requests.items())},
            "provider_requests_per_job_total": round(sum(self.requests.values()) / self.jobs, 2),
        }


async def official_client(world: World, *, jobs: int, concurrency: int, timing: RunTiming) -> Official:
    """The same jobs through the official ``replicate`` client: ``predictions.create`` then ``wait()``, with
    predictions that run as long as Encore's did (the same ``timing``, so the same run times in the same order)."""
    from replicate.client import Client  # the benchmark's own dependency (pyproject: the bench group)

    client = Client(api_token=world.fake.token, base_url=world.fake.root_url)
    result = Official(jobs, float(client.poll_interval), concurrency)
    world.use_output(WAV_30S)
    world.fake.timing = timing
    version = musicgen_version()
    req_from = len(world.fake.requests)
    loop = asyncio.get_running_loop()
    t0: dict[str, float] = {}
    done: dict[str, float] = {}

    def create(i: int) -> Any:
        return client.predictions.create(version=version, input={"prompt": f"official {i}", "duration": 30})

    def wait(prediction: Any) -> None:
        prediction.wait()
        done[prediction.id] = time.perf_counter()
        assert prediction.status == "succeeded", prediction.status

    with ThreadPoolExecutor(max_workers=2 * concurrency) as pool:

        async def one(i: int) -> None:
            prediction = await loop.run_in_executor(pool, create, i)
            waiting = loop.run_in_executor(pool, wait, prediction)
            t0[prediction.id] = await world.succeeded_at(prediction.id)
            await waiting

        await for_each(range(jobs), one, workers=concurrency)
    result.notice_ms = [(done[pid] - start) * 1000 for pid, start in t0.items()]
    result.requests = Counter(classify(r.path, r.method) for r in world.fake.requests[req_from:])
    return result


@dataclass
class Throughput:
    jobs: int
    submit_s: float = 0.0
    drain_s: float = 0.0
    cpu_ms_per_job: float = 0.0
    peak_rss_mb: float = 0.0
    requests: Counter[str] = field(default_factory=Counter)
    max_creates_per_min: int = 0
    max_api_calls_per_min: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "jobs_in_flight": self.jobs,
            "submit_s": round(self.submit_s, 1),
            "commands_per_s": round(self.jobs / self.submit_s, 1),
            "drain_s": round(self.drain_s, 1),
            "deliveries_per_s": round(self.jobs / self.drain_s, 1),
            "cpu_ms_per_job": round(self.cpu_ms_per_job, 1),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "provider_requests_per_job": {k: round(v / self.jobs, 2) for k, v in sorted(self.requests.items())},
            "provider_requests_per_job_total": round(sum(self.requests.values()) / self.jobs, 2),
            # Replicate's limits: creates (600/min) and every other API call (3000/min); output downloads
            # come from replicate.delivery, outside the API.
            "max_creates_in_any_60s": self.max_creates_per_min,
            "max_other_api_calls_in_any_60s": self.max_api_calls_per_min,
        }


def max_per_minute(times: list[float]) -> int:
    """The most requests in any 60 s window (of the times given, in seconds)."""
    times = sorted(times)
    if not times:
        return 0
    best, left = 0, 0
    for right, t in enumerate(times):
        while t - times[left] > 60.0:
            left += 1
        best = max(best, right - left + 1)
    return best


def provider_load(requests: list[RecordedRequest]) -> tuple[Counter[str], int, int]:
    """Requests by kind, and the most creates and the most other API calls in any 60 s (Replicate's limits:
    creates 600 a minute, every other API call 3,000; output downloads come from replicate.delivery, outside
    the API)."""
    kinds = [(classify(r.path, r.method), r.at) for r in requests]
    creates = max_per_minute([at for kind, at in kinds if kind == "create"])
    others = max_per_minute([at for kind, at in kinds if kind not in ("create", "download")])
    return Counter(kind for kind, _ in kinds), creates, others


async def fill_and_drain(
    world: World,
    *,
    label: str,
    jobs: int,
    files_from: int,
    submit_concurrency: int,
    at_drain: Callable[[], Awaitable[None]] | None = None,
) -> tuple[float, float]:
    """``jobs`` commands until every prediction exists at the provider, then all finish at once (``at_drain``
    is awaited just before). Returns the seconds the commands took to be in flight, and the seconds until every
    audio message was in Discord."""
    started = time.perf_counter()
    pids: list[str] = []

    async def submit(i: int) -> None:
        prompt = f"{label} {i}"
        handle = await world.users[i % len(world.users)].slash("music generate", prompt=prompt, duration=5)
        await handle.wait_response(timeout_s=60)
        pids.append(await world.prediction_for(prompt, timeout_s=600))

    await for_each(range(jobs), submit, workers=submit_concurrency)
    submit_s = time.perf_counter() - started
    if at_drain is not None:
        await at_drain()
    drain_from = time.perf_counter()
    await for_each(pids, world.fake.succeed, workers=32)
    await world.wait_for_files(files_from + jobs, timeout_s=900)
    return submit_s, time.perf_counter() - drain_from


async def throughput(world: World, *, jobs: int, submit_concurrency: int = 16) -> Throughput:
    """``jobs`` commands until all are in flight at the provider, then all finish at once: deliveries per second."""
    result = Throughput(jobs)
    world.use_output(WAV_5S)
    data_dir = world.workdir / "data-throughput"
    env = world.bot_env(webhooks=True, data_dir=data_dir, limits={"replicate_jobs_in_flight": 0})
    await world.start_bot(env)
    bot = world.bot
    assert bot is not None
    req_from, cpu_from, files_from = len(world.fake.requests), bot.cpu_s(), len(world.files)
    result.submit_s, result.drain_s = await fill_and_drain(
        world, label="throughput", jobs=jobs, files_from=files_from, submit_concurrency=submit_concurrency
    )
    result.cpu_ms_per_job = (bot.cpu_s() - cpu_from) * 1000 / jobs
    result.peak_rss_mb = bot.peak_rss_mb()
    result.requests, result.max_creates_per_min, result.max_api_calls_per_min = provider_load(
        world.fake.requests[req_from:]
    )
    await world.stop_bot()
    return result


@dataclass
class Tracked:
    jobs: int
    seed_s: float = 0.0
    empty_startup_s: float = 0.0
    startup_s: float = 0.0
    first_poll_s: float = 0.0
    window_s: float = 0.0
    requests_in_window: int = 0
    max_requests_per_min: int = 0
    distinct_polled: int = 0
    peak_rss_mb: float = 0.0
    rss_mb: float = 0.0
    cpu_ms_per_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "tracked_jobs": self.jobs,
            "startup_empty_s": round(self.empty_startup_s, 2),
            "startup_with_jobs_s": round(self.startup_s, 2),
            "first_poll_after_start_s": round(self.first_poll_s, 2),
            "window_s": round(self.window_s, 1),
            "provider_requests_per_min": round(self.requests_in_window * 60 / self.window_s),
            "max_provider_requests_in_any_60s": self.max_requests_per_min,
            "distinct_jobs_polled_in_window": self.distinct_polled,
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "rss_mb_at_end": round(self.rss_mb, 1),
            "cpu_ms_per_s": round(self.cpu_ms_per_s, 1),
        }


async def _seed_predictions(world: World, count: int) -> list[str]:
    """``count`` predictions created at the fake through its real API, then started (processing). They stand for
    predictions made over the hours before a restart, so the account's per-minute limits are lifted while they are
    made (and these creates are not counted against the minutes that follow)."""
    version = musicgen_version()
    headers = {"Authorization": f"Bearer {world.fake.token}"}
    pids: list[str] = []
    limits, world.fake.rate_limits = world.fake.rate_limits, None
    try:
        await _create_started(world, count, version, headers, pids)
    finally:
        world.fake.rate_limits = limits
    return pids


async def _create_started(world: World, count: int, version: str, headers: dict[str, str], pids: list[str]) -> None:
    async with aiohttp.ClientSession(headers=headers) as session:

        async def create(i: int) -> None:
            body = {"version": version, "input": {"prompt": f"tracked {i}", "duration": 8}}
            async with session.post(f"{world.fake.base_url}/predictions", json=body) as response:
                response.raise_for_status()
                pid = str((await response.json())["id"])
            await world.fake.begin(pid)
            pids.append(pid)

        await for_each(range(count), create, workers=32)


async def _seed_jobs(db_path: Path, pids: list[str], *, channel_id: int, guild_id: int, users: list[int]) -> None:
    """One running job per prediction, as Encore leaves them in its database when it stops."""
    db = Database(db_path)
    await db.open()
    repo = JobsRepo(db)
    ref = Settings().models.musicgen.ref
    try:
        await db.conn.execute("BEGIN")
        for i, pid in enumerate(pids):
            job_id = f"trk{i:07d}"
            request = JobRequest(prompt=f"tracked {i}", duration_s=8)
            origin = JobOrigin(user_id=users[i % len(users)], guild_id=guild_id, channel_id=channel_id)
            await repo.insert(
                job_id=job_id,
                origin=origin,
                provider="replicate",
                model="musicgen",
                model_ref=ref,
                request=json.loads(request.model_dump_json()),
                input={"prompt": request.prompt, "duration": 8},
            )
            assert await repo.transition(job_id, JobStatus.SUBMITTED, prediction_id=pid)
            assert await repo.transition(job_id, JobStatus.RUNNING)
        await db.conn.execute("COMMIT")
    finally:
        await db.close()


async def tracked(world: World, *, jobs: int, window_s: float, empty_startup_s: float) -> Tracked:
    """Encore restarts with ``jobs`` unfinished jobs (poll mode): startup time, then polling load and memory."""
    result = Tracked(jobs, empty_startup_s=empty_startup_s, window_s=window_s)
    data_dir = world.workdir / "data-tracked"
    started = time.perf_counter()
    pids = await _seed_predictions(world, jobs)
    await _seed_jobs(
        data_dir / "encore.sqlite3",
        pids,
        channel_id=world.sim.default_channel_id,
        guild_id=world.sim.guild.id,
        users=[u.id for u in world.users],
    )
    result.seed_s = time.perf_counter() - started
    req_from = len(world.fake.requests)
    result.startup_s = await world.start_bot(world.bot_env(webhooks=False, data_dir=data_dir))
    bot = world.bot
    assert bot is not None
    await world.fake.next_request("GET", "/v1/predictions/", timeout=120)  # (a fresh world: the first poll)
    result.first_poll_s = time.perf_counter() - bot.started_at
    window_from, cpu_from = time.perf_counter(), bot.cpu_s()
    await asyncio.sleep(window_s)  # the load we measure is what the bot does in this window
    window_to = time.perf_counter()
    result.cpu_ms_per_s = (bot.cpu_s() - cpu_from) * 1000 / (window_to - window_from)
    in_window = [r for r in world.fake.requests[req_from:] if window_from <= r.at < window_to]
    result.requests_in_window = len(in_window)
    result.max_requests_per_min = max_per_minute([r.at for r in world.fake.requests[req_from:]])
    result.distinct_polled = len({r.path for r in in_window if r.method == "GET"})
    result.peak_rss_mb = bot.peak_rss_mb()
    result.rss_mb = bot.rss_mb()
    await world.stop_bot()
    return result
