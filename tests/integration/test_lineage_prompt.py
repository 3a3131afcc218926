"""A continuation takes its parent's prompt only where the parent's prompt may be shown."""

from __future__ import annotations

from pathlib import Path

from bot.jobs.phase import Phase
from bot.records import JobOrigin
from tests.fakes.replicate import FakeReplicate
from tests.integration.conftest import Harness


async def finished_track(harness: Harness, fake: FakeReplicate) -> tuple[str, Path]:
    job = await harness.submit("secret harbour plan", duration_s=3, user_id=42)  # guild 1
    await fake.succeed(await fake.wait_for_prediction())
    assert await harness.listener.wait_for_phase(job.id) == Phase.DONE
    done = await harness.job(job.id)
    assert done.output_path is not None
    return done.id, Path(done.output_path)


async def test_someone_else_in_another_server_does_not_get_the_prompt(harness: Harness, fake: FakeReplicate) -> None:
    await harness.start()
    parent_id, track = await finished_track(harness, fake)
    parent = await harness.job(parent_id)
    elsewhere = JobOrigin(user_id=7, guild_id=2, channel_id=20)
    child = await harness.service.continue_track(track, elsewhere, parent=parent, extra_s=2)
    assert "secret" not in child.prompt
    assert child.context["parent"] == parent_id  # still the next part of the chain
    assert child.part == 2


async def test_the_requester_and_the_same_server_keep_the_prompt(harness: Harness, fake: FakeReplicate) -> None:
    await harness.start()
    parent_id, track = await finished_track(harness, fake)
    parent = await harness.job(parent_id)
    for origin in (JobOrigin(user_id=42, guild_id=2, channel_id=20), JobOrigin(user_id=7, guild_id=1, channel_id=2)):
        child = await harness.service.continue_track(track, origin, parent=parent, extra_s=2)
        assert child.prompt == "secret harbour plan"
