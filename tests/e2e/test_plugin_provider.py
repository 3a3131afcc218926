"""A provider added by one module and one registration runs a job end to end, through Discord.

``tests/plugins/gpubox.py`` declares "gpubox" (a Cog-protocol server of one's own under a new name, with its
own ``[gpubox]`` section); the registry the bot runs with is Encore's plus that one line. Nothing in ``bot/``
names it: its settings are loaded, its capacity and cost read, its busy server waited for, its per-job webhook
and upload routes mounted, all from its declaration.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.providers.registry import PROVIDERS
from tests.e2e.conftest import Encore, card_field, job_id_of, status_is
from tests.fakes.audio import audio_info
from tests.fakes.cog import FakeCog
from tests.fakes.discord import DiscordSimulator
from tests.fakes.replicate import FakeReplicate
from tests.plugins import gpubox

UPLOAD_SECRET = "gpubox-upload-secret-0000"


@pytest.fixture
async def box() -> AsyncIterator[FakeCog]:
    async with FakeCog(setup_done=False) as server:  # still setting up: busy, until the test says
        yield server


async def test_a_provider_of_one_module_and_one_line_runs_a_job_end_to_end(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate, box: FakeCog
) -> None:
    encore.providers = PROVIDERS.adding(gpubox.PROVIDER)  # the one registration
    settings = encore.configure(
        with_webhooks=True,
        models={"musicgen": {"provider": "gpubox"}},
        gpubox={"base_url": box.base_url, "upload_secret": UPLOAD_SECRET, "retry_s": 0.02, "jobs_at_once": 2},
    )
    box.upload_url = f"{settings.webhooks.public_url}gpubox/uploads/{UPLOAD_SECRET}/"
    await encore.start()

    handle = await sim.user("alice").slash("music generate", prompt="lofi on my own box", duration=2)
    card = await handle.wait_original(status_is("Queued"))
    # The box is busy setting up: the provider says so (ProviderBusyError), and the job waits, asking again.
    await box.next_request("GET", "/health-check")
    await box.next_request("GET", "/health-check")
    assert box.history == []  # nothing was created while it was busy
    box.finish_setup()

    key = await box.wait_for_prediction()
    created = await box.next_request("PUT", "/predictions/")
    assert created.json is not None
    job_id = job_id_of(card)
    assert f"/gpubox/webhooks/{job_id}/" in created.json["webhook"]  # its own per-job route
    await box.complete(key)
    audio = await handle.wait_file()
    assert round(audio_info(audio.data).duration_s) == 2
    [upload] = box.uploads
    assert (upload.status_code, upload.prediction_id) == (201, key)  # to its own upload route
    assert fake.count("POST") == 0  # nothing ran on Replicate
    done = await handle.wait_original(status_is("Done"))
    info = await (await sim.user("alice").click(done, f"encore:info:{job_id}")).wait_original()
    assert card_field(info, "Cost") == "$0.0000 (actual)"  # its own cost rule: one's own box costs nothing
