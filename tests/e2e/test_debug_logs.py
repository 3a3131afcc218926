"""At DEBUG, Encore's log shows no interaction token and no Cog webhook token, through a whole job's story."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator, Iterator

import pytest

from bot import logs
from tests.e2e.conftest import Encore, job_id_of, status_is, use_cog
from tests.fakes.cog import FakeCog
from tests.fakes.discord import DiscordSimulator
from tests.fakes.replicate import FakeReplicate


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """Encore's own handler (job ids, masking) on a string, with every logger at DEBUG, as
    ``[logging] level = "DEBUG"`` runs the bot."""
    out = io.StringIO()
    handler = logs.make_handler(stream=out)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield out
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
async def cog() -> AsyncIterator[FakeCog]:
    async with FakeCog(auto_complete=True) as server:
        yield server


async def test_debug_logs_show_no_interaction_or_cog_webhook_tokens(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate, cog: FakeCog, debug_log: io.StringIO
) -> None:
    secret = "e2e-upload-secret-debug-0"
    use_cog(encore, cog, upload_secret=secret)
    bot = await encore.start()
    alice = sim.user("alice")
    handle = await alice.slash("music generate", prompt="my own gpu", duration=2)
    await handle.wait_file()
    card = await handle.wait_original(status_is("Done"))
    click = await alice.click(card, f"encore:info:{job_id_of(card)}")  # a component's callback, another token
    await click.wait_original()
    job = await bot.core.repo.get(job_id_of(card))
    assert job is not None
    assert job.callback_token is not None
    await encore.stop()

    out = debug_log.getvalue()
    for token in (handle.token, click.token, job.callback_token):
        assert token not in out
        assert token[-24:] not in out  # not even a part of it
    # The lines that would have shown them are there, masked.
    assert f"/interactions/{handle.id}/***INTERACTION_TOKEN***/callback" in out
    assert "/webhooks/" in out
    assert "/***INTERACTION_TOKEN***/messages/@original" in out
    assert "***COG_WEBHOOK_TOKEN***" in out
    assert secret not in out
