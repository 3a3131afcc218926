"""SQLite is one bot process: the leases a crashed run left behind are void when it starts again, so its jobs
resume at once instead of waiting for leases that nobody will renew to run out."""

from __future__ import annotations

import time

from bot.jobs.leases import Kind
from bot.jobs.phase import Phase
from bot.storage.leases_repo import LeasesRepo
from tests.fakes.replicate import FakeReplicate
from tests.integration.conftest import Harness


async def test_a_crashed_runs_leases_do_not_hold_up_the_restart(harness: Harness, fake: FakeReplicate) -> None:
    await harness.start()
    polled = await harness.submit("polled when it crashed", duration_s=2)
    pid = await fake.wait_for_prediction()
    await fake.begin(pid)
    await harness.listener.wait_for_phase(polled.id, Phase.GENERATING)
    await harness.stop()
    # What a crash leaves (a clean stop gives them up): its leases, good for an hour yet.
    async with harness.backend.opened(harness.data_dir / "encore.sqlite3") as db:
        leases, now = LeasesRepo(db), time.time()
        assert await leases.take(Kind.POLL, [polled.id], holder="bot:crashed:1:aaaaaa", until=now + 3600, now=now)
    await fake.succeed(pid)
    await harness.start()
    assert await harness.listener.wait_for_phase(polled.id) == Phase.DONE
    assert len(harness.listener.deliveries_of(polled.id)) == 1
    assert len(fake.predictions) == 1
