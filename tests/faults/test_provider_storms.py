"""Many jobs through the real core while the fake Replicate answers a large share of requests with faults.

Creates, polls and output downloads get 500, 502, 503, 429 (with ``Retry-After``, as Replicate sends it) and
hangs past the client's timeout, mixed in at random but decided per job and per attempt (a seeded plan), so a
run's figures do not depend on how the event loop interleaved the jobs. A few jobs meet a storm longer than
their retry budget and must fail with a clear reason; every other job must be delivered exactly once, from
one prediction, with a bounded number of requests. Single faults are covered in tests/integration.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from bot.jobs.phase import Phase
from bot.records import Job, JobStatus
from tests.fakes.audio import wav_info
from tests.fakes.replicate import FakeReplicate, RecordedRequest
from tests.faults.conftest import Reliability
from tests.integration.conftest import Harness

SEED = 8_2024
RETRY_AFTER_S = 1  # what the fake's 429s ask for (Replicate's own advice is ~30 s; tests can't wait that long)
READ_TIMEOUT_S = 0.5  # the bot's read timeout towards Replicate in these tests
HANG_S = 1.0  # a hung request answers only after this, long after the client gave up
# A hung create still lands at Replicate (after HANG_S); the bot looks for it retry_s after giving up, so
# retry_s must leave it time to land, or the bot cannot know and creates again (see test_create_that_times_out...).
RETRY_S = 1.5
STATUS = {"500": 500, "502": 502, "503": 503, "429": 429}

# Operations the plan can fail, and how many times in a row at most for jobs that must get through:
# a create survives two (429s are retried in place; after a 5xx or hang the bot looks before creating
# again, at most 3 creates); a download survives two (3 attempts); a poll is retried by the poller for
# as long as the job may run, so polls get longer storms, longer than one poll's own retries (4 tries).
MAX_IN_A_ROW = {"create": 2, "poll": 6, "download": 2}
KINDS = {
    "create": ("500", "502", "503", "429", "429", "hang"),
    "poll": ("500", "502", "503", "429", "429", "hang"),
    "download": ("500", "502", "503", "hang"),
}


@dataclass
class StormPlan:
    """Decides which requests fail: by job (its prompt), operation and attempt number, from a seed."""

    fake: FakeReplicate
    seed: int
    share: float  # chance that an attempt fails (until MAX_IN_A_ROW)
    always: dict[tuple[str, str], str] = field(default_factory=dict)  # (prompt, op) -> fault on every attempt
    leading: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)  # -> fault on the first n
    _decided: dict[int, str | None] = field(default_factory=dict)  # id(recorded request) -> fault
    _attempts: Counter[tuple[str, str]] = field(default_factory=Counter)
    _in_a_row: Counter[tuple[str, str]] = field(default_factory=Counter)
    injected: list[tuple[str, str, str]] = field(default_factory=list)  # (prompt, op, fault), as answered

    def job_and_op(self, request: RecordedRequest) -> tuple[str, str] | None:
        if request.method == "POST" and request.path == "/v1/predictions" and isinstance(request.json, dict):
            return str(request.json["input"]["prompt"]), "create"
        parts = request.path.split("/")
        if request.method == "GET" and request.path.startswith("/v1/predictions/") and len(parts) == 4:
            op, pid = "poll", parts[3]
        elif request.method == "GET" and request.path.startswith("/delivery/"):
            op, pid = "download", parts[2]
        else:
            return None  # lists, cancels, the webhook secret: never failed here
        pred = self.fake.predictions.get(pid)
        return (str(pred.input["prompt"]), op) if pred is not None else None

    def decide(self, request: RecordedRequest) -> str | None:
        """The fault for this request (None: answer normally). Asked by each injected fault; decided once."""
        key = id(request)
        if key not in self._decided:
            self._decided[key] = self._choose(request)
        return self._decided[key]

    def _choose(self, request: RecordedRequest) -> str | None:
        job_op = self.job_and_op(request)
        if job_op is None:
            return None
        prompt, op = job_op
        attempt = self._attempts[job_op]
        self._attempts[job_op] += 1
        lead_fault, lead_n = self.leading.get(job_op, ("", 0))
        if job_op in self.always:
            fault = self.always[job_op]
        elif attempt < lead_n:
            fault = lead_fault
        else:
            rng = random.Random(f"{self.seed}:{prompt}:{op}:{attempt}")
            if self._in_a_row[job_op] >= MAX_IN_A_ROW[op] or rng.random() >= self.share:
                self._in_a_row[job_op] = 0
                return None
            self._in_a_row[job_op] += 1
            fault = rng.choice(KINDS[op])
        self.injected.append((prompt, op, fault))
        return fault

    def install(self) -> None:
        for kind, status in STATUS.items():
            headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 429 else None
            self.fake.inject(status=status, headers=headers, times=None, when=lambda r, k=kind: self.decide(r) == k)
        self.fake.inject(status=None, delay_s=HANG_S, times=None, when=lambda r: self.decide(r) == "hang")

    def summary(self) -> str:
        by_kind = Counter(fault for _, _, fault in self.injected)
        by_op = Counter(op for _, op, _ in self.injected)
        kinds = ", ".join(f"{by_kind[k]} {k}" for k in ("500", "502", "503", "429", "hang"))
        ops = ", ".join(f"{by_op[o]} on {o}" for o in ("create", "poll", "download"))
        return f"{len(self.injected)} faults: {kinds} (hangs past the {READ_TIMEOUT_S:g} s timeout); {ops}"


POLLS_WHILE_RUNNING = 4  # each prediction runs until the bot has polled it this many times


async def run_prediction(fake: FakeReplicate, pid: str) -> None:
    await fake.begin(pid)
    for _ in range(POLLS_WHILE_RUNNING):
        await fake.next_request("GET", f"/v1/predictions/{pid}", timeout=3600)
    await fake.succeed(pid)  # the model runs in a worker thread


async def run_predictions(fake: FakeReplicate) -> None:
    """Replicate's side: every prediction created starts, runs while the bot polls it, and finishes."""
    running: set[asyncio.Task[None]] = set()
    try:
        while True:
            pid = await fake.wait_for_prediction(timeout=3600)
            task = asyncio.create_task(run_prediction(fake, pid))
            running.add(task)
            task.add_done_callback(running.discard)
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


@pytest.fixture
async def replicate_side(fake: FakeReplicate) -> AsyncIterator[None]:
    task = asyncio.create_task(run_predictions(fake))
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def spacing_after_429s(fake: FakeReplicate, plan: StormPlan) -> list[float]:
    """For every 429 answered on a job's create or poll, seconds until its next create or poll."""
    calls: dict[tuple[str, str], list[RecordedRequest]] = defaultdict(list)
    for request in fake.requests:
        if (job_op := plan.job_and_op(request)) is not None and job_op[1] in ("create", "poll"):
            calls[job_op].append(request)
    gaps = []
    for requests in calls.values():
        for earlier, later in itertools.pairwise(requests):
            if plan.decide(earlier) == "429":
                gaps.append(later.at - earlier.at)
    return gaps


def requests_per_job(fake: FakeReplicate, plan: StormPlan) -> dict[str, Counter[str]]:
    """How many creates, polls and downloads each job (by prompt) cost, retries included."""
    per_job: dict[str, Counter[str]] = defaultdict(Counter)
    for request in fake.requests:
        if (job_op := plan.job_and_op(request)) is not None:
            per_job[job_op[0]][job_op[1]] += 1
    return per_job


async def run_jobs(harness: Harness, prompts: list[str]) -> tuple[list[Job], list[Phase], float]:
    """Start the core (poll mode) with short timeouts, submit one job per prompt, wait for every outcome."""
    await harness.start(
        replicate={"read_timeout_s": READ_TIMEOUT_S, "max_retries": 3},
        storage={"download_timeout_s": READ_TIMEOUT_S},
        jobs={"retry_s": RETRY_S},
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    jobs = [await harness.submit(prompt, duration_s=1 + i % 3) for i, prompt in enumerate(prompts)]
    async with asyncio.timeout(75):
        phases = await asyncio.gather(*(harness.listener.wait_for_phase(j.id, timeout=75) for j in jobs))
    return jobs, phases, loop.time() - started


async def assert_delivered_once(harness: Harness, fake: FakeReplicate, job: Job, phase: Phase) -> None:
    final = await harness.job(job.id)
    assert phase == Phase.DONE, f"{job.prompt}: {final.status} {final.error}"
    assert final.status == JobStatus.DELIVERED
    deliveries = harness.listener.deliveries_of(job.id)
    assert len(deliveries) == 1, f"{job.prompt}: delivered {len(deliveries)} times"
    assert round(wav_info(deliveries[0].data).duration_s) == job.duration_s
    made = [p for p in fake.predictions.values() if p.input.get("prompt") == job.prompt]
    assert len(made) == 1, f"{job.prompt}: {len(made)} predictions for one job"
    assert final.prediction_id == made[0].id


@pytest.mark.timeout(90)
async def test_provider_storm_on_creates_polls_and_downloads(
    harness: Harness, fake: FakeReplicate, replicate_side: None, reliability: Reliability
) -> None:
    jobs_n = 48
    prompts = [f"storm {i:02d} warm lofi beat" for i in range(jobs_n)]
    throttled = set(prompts[:2])  # every create answered 429: longer than the client's retry budget
    no_output = set(prompts[2:4])  # every download fails: longer than the 3 download attempts
    plan = StormPlan(fake, SEED, share=0.35)
    plan.always |= {(p, "create"): "429" for p in throttled} | {(p, "download"): "503" for p in no_output}
    # Polls throttled for longer than one poll's own retries (4 tries): the poller must still wait.
    plan.leading |= {(p, "poll"): ("429", 6) for p in prompts[4:7]}
    plan.install()
    jobs, phases, elapsed = await run_jobs(harness, prompts)

    outcomes: Counter[str] = Counter()
    for job, phase in zip(jobs, phases, strict=True):
        final = await harness.job(job.id)
        made = [p for p in fake.predictions.values() if p.input.get("prompt") == job.prompt]
        if job.prompt in throttled:
            assert phase == Phase.FAILED
            assert final.error == "The music service is busy right now. Please try again in a minute."
            assert made == []
            outcomes["failed with reason (create throttled past the retries)"] += 1
        elif job.prompt in no_output:
            assert phase == Phase.FAILED
            assert final.error == "I couldn't fetch the finished audio."
            assert harness.listener.deliveries_of(job.id) == []
            assert len(made) == 1
            outcomes["failed with reason (output unreachable)"] += 1
        else:
            await assert_delivered_once(harness, fake, job, phase)
            outcomes["delivered once"] += 1
    assert sum(len(ids) for ids in harness.listener.messages) == outcomes["delivered once"]
    assert sum(f.hits for f in fake.faults) == len(plan.injected)  # the plan's count is what was answered

    # Requests per job stay bounded: creates by the retry budgets (4 tries x 3 creates), downloads by 3.
    per_job = requests_per_job(fake, plan)
    creates = [per_job[p]["create"] for p in prompts]
    polls = [per_job[p]["poll"] for p in prompts if p not in throttled]
    downloads = [per_job[p]["download"] for p in prompts]
    assert max(creates) <= 4 * 3
    assert max(downloads) <= 3
    assert all(per_job[p]["create"] == 4 for p in throttled)  # 1 + max_retries, then it gave up
    assert max(polls) <= 4 * (POLLS_WHILE_RUNNING + MAX_IN_A_ROW["poll"] + 2)
    # A hung create still landed at Replicate: the bot found it by listing and adopted it, not created again.
    hung_creates = {p for p, op, fault in plan.injected if (op, fault) == ("create", "hang")}
    assert hung_creates
    for prompt in hung_creates:
        [made] = [pred for pred in fake.predictions.values() if pred.input.get("prompt") == prompt]
        assert (await harness.job(jobs[prompts.index(prompt)].id)).prediction_id == made.id
    # Every 429 was honoured: the job's next create or poll waited at least Retry-After.
    gaps = spacing_after_429s(fake, plan)
    assert len(gaps) >= 3 * 6
    assert min(gaps) >= RETRY_AFTER_S - 0.05, sorted(gaps)[:5]

    lists = sum(r.method == "GET" and r.path == "/v1/predictions" for r in fake.requests)
    figures = (
        f"requests per job: creates <= {max(creates)}, polls <= {max(polls)} (mean {sum(polls) / len(polls):.1f}), "
        f"downloads <= {max(downloads)}; {lists} lists; {len(hung_creates)} hung creates adopted; {elapsed:.1f} s"
    )
    print(f"\n{plan.summary()}; {figures}")
    reliability.record(jobs=jobs_n, faults=f"{plan.summary()}; {figures}", outcomes=outcomes)


@pytest.mark.timeout(60)
async def test_sustained_throttle_is_waited_out_not_hammered(
    harness: Harness, fake: FakeReplicate, replicate_side: None, reliability: Reliability
) -> None:
    """Every job's first 2 creates and first 5 polls are throttled (Retry-After 1 s): longer than one
    poll's own retries. The bot must wait each 429 out, not poll at its usual 10-50 ms pace."""
    jobs_n, throttled_polls = 24, 5
    prompts = [f"throttled {i:02d} ambient pads" for i in range(jobs_n)]
    plan = StormPlan(fake, SEED, share=0.0)
    plan.leading |= {(p, "create"): ("429", 2) for p in prompts} | {
        (p, "poll"): ("429", throttled_polls) for p in prompts
    }
    plan.install()
    jobs, phases, elapsed = await run_jobs(harness, prompts)

    for job, phase in zip(jobs, phases, strict=True):
        await assert_delivered_once(harness, fake, job, phase)
    gaps = spacing_after_429s(fake, plan)
    assert len(gaps) == jobs_n * (2 + throttled_polls)  # each 429 was followed by exactly one later try
    assert min(gaps) >= RETRY_AFTER_S - 0.05, sorted(gaps)[:5]
    # Counted per prediction: while throttled, at most one poll per Retry-After.
    per_job = requests_per_job(fake, plan)
    for prompt in prompts:
        polls = [r for r in fake.requests if plan.job_and_op(r) == (prompt, "poll")]
        throttled = polls[: throttled_polls + 1]  # the 429s and the first poll let through
        span = throttled[-1].at - throttled[0].at
        assert span >= throttled_polls * RETRY_AFTER_S - 0.05
        assert per_job[prompt]["create"] == 3
    outcomes = Counter({"delivered once": jobs_n})
    faults = f"{len(plan.injected)} 429s with Retry-After {RETRY_AFTER_S} s ({jobs_n} x 2 creates, {jobs_n} x 5 polls)"
    print(f"\n{faults}; shortest wait after a 429 {min(gaps):.2f} s; {elapsed:.1f} s")
    reliability.record(jobs=jobs_n, faults=faults, outcomes=outcomes)
