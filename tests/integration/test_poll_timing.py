"""Poll mode: the poller reads the model's progress bar and looks when the run should end, not on a backoff
that is seconds late or many requests early. Counted in requests (the fake counts them), awaited as events."""

from __future__ import annotations

from pathlib import Path

from bot.jobs.phase import Phase
from tests.fakes.replicate import FakeReplicate, RunTiming
from tests.integration.conftest import Harness

# A run that goes exactly as its bar says: 0.1 s queued, 0.2 s setting up, 503 steps at 100 a second (a 10 s
# MusicGen track), 0.3 s after the bar. About 5.6 s in all.
PREDICTABLE = RunTiming(
    seed=7,
    queue_s=(0.1, 0.1),
    setup_s=(0.2, 0.2),
    rate_it_s=100.0,
    rate_spread=0.0,
    rate_jitter=0.0,
    warmup_steps=0,
    after_bar_s=0.3,
    after_bar_spread=0.0,
)
# Backoff from 0.25 s, growing by half up to 4 s: over this run, polls at 0.25, 0.5, 0.88, 1.44, 2.28, 3.55,
# 5.45 and 8.3 s: eight requests, and the end seen 2.6 s late.
BACKOFF = {"poll_initial_s": 0.25, "poll_factor": 1.5, "poll_max_s": 4.0}


def backoff_polls(run_s: float) -> int:
    """How many polls the backoff alone makes until one comes after a run of ``run_s`` ended."""
    due, interval, polls = BACKOFF["poll_initial_s"], BACKOFF["poll_initial_s"], 1
    while due < run_s:
        due += interval
        interval = min(BACKOFF["poll_max_s"], interval * BACKOFF["poll_factor"])
        polls += 1
    return polls


async def test_the_poller_looks_when_the_bar_says_the_run_ends(tmp_path: Path) -> None:
    async with FakeReplicate(timing=PREDICTABLE) as fake:
        harness = Harness(fake, tmp_path / "data")
        try:
            await harness.start(jobs=BACKOFF)
            job = await harness.submit(model="musicgen", duration_s=10)
            pid = await fake.wait_for_prediction()
            assert await harness.listener.wait_for_phase(job.id, Phase.UPLOADING, timeout=60) == Phase.UPLOADING
            assert fake.prediction(pid).status == "succeeded"  # it ended by itself, and the poller saw it
            polls = fake.count("GET", f"/v1/predictions/{pid}")
            created = next(r.at for r in fake.requests if r.method == "POST")
            ended = fake.prediction(pid).ended_perf
            assert ended is not None
            # A look or two to read its bar, another as it should end: fewer than the backoff would have made
            # for this very run (eight, in a run as long as planned; more if a loaded machine stretched it).
            assert polls <= backoff_polls(ended - created) - 2, (polls, backoff_polls(ended - created))
            assert await harness.listener.wait_for_phase(job.id, Phase.DONE, timeout=30) == Phase.DONE
            assert fake.count("GET", f"/v1/predictions/{pid}") == polls  # nothing after it was seen
        finally:
            await harness.stop()
