"""Discord's clock: an interaction not answered within 3 s is dead, and its token lives 15 minutes.

A slow database is real here: another program holds SQLite's write lock (``WriteLock``, as an operator's
``sqlite3`` shell in a transaction does) while the simulated clock moves on by many seconds, so the time the
bot spends waiting is Discord's time, without a sleep. The user must still get an answer at once, and the card
once the database lets go; the simulator refuses any first response that comes after the deadline.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from tests.e2e.conftest import Encore, card_field, card_status, job_id_of, status_is
from tests.fakes.discord import DiscordSimulator, InteractionHandle
from tests.fakes.elevenlabs import FakeElevenLabs
from tests.fakes.replicate import FakeReplicate
from tests.faults._storage import WriteLock

STUCK_S = 10.0  # how long (of Discord's time) the database stays locked: far past the 3 s deadline


async def start_patient(encore: Encore) -> None:
    """Start Encore so that it waits for a locked database (a long busy timeout) rather than give up."""
    encore.configure(storage={"busy_timeout_ms": 120_000})
    await encore.start()


@contextlib.asynccontextmanager
async def database_locked(encore: Encore) -> AsyncIterator[None]:
    """Another program holds the write lock; the bot waits for it (a long busy timeout) rather than fail."""
    lock = WriteLock(encore.settings.storage.database_path)
    await lock.acquire()
    try:
        yield
    finally:
        await lock.release()


async def answered_while_stuck(sim: DiscordSimulator, handle: InteractionHandle) -> None:
    """The bot answers before it touches the database; then the database stays stuck for ``STUCK_S``."""
    response = await handle.wait_response()
    assert response.type == 5  # "Encore is thinking…", for everyone in the channel
    assert response.message is not None
    assert not response.message.is_ephemeral
    sim.clock.advance(STUCK_S)


async def test_generate_answers_at_once_while_the_database_is_stuck(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    await start_patient(encore)
    async with database_locked(encore):
        handle = await sim.user("alice").slash("music generate", prompt="patience", duration=5)
        await answered_while_stuck(sim, handle)
        assert fake.predictions == {}  # nothing could be stored, so nothing was submitted
    card = await handle.wait_original()  # the card replaces "thinking…" once the database lets go
    assert card.id == handle.record.original_id
    assert card.embeds[0]["title"] == "patience"
    assert card_field(card, "Duration") == "5 s"
    assert card.custom_ids() == [f"encore:cancel:{job_id_of(card)}"]
    pid = await fake.wait_for_prediction()
    await fake.succeed(pid)
    await handle.wait_file()
    assert "Done" in card_status(await handle.wait_original(status_is("Done")))


async def test_blend_answers_at_once_while_the_database_is_stuck(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    await start_patient(encore)
    async with database_locked(encore):
        handle = await sim.user("alice").slash("music blend", prompt_a="church bells", prompt_b="electronic beats")
        await answered_while_stuck(sim, handle)
    card = await handle.wait_original()
    assert card.embeds[0]["title"] == "church bells"
    pid = await fake.wait_for_prediction()
    assert fake.prediction(pid).input["prompt_b"] == "electronic beats"


async def test_song_answers_at_once_while_the_database_is_stuck(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs
) -> None:
    await start_patient(encore)
    async with database_locked(encore):
        handle = await sim.user("alice").slash("music song", prompt="a song about waiting", length=5)
        await answered_while_stuck(sim, handle)
        assert eleven.generations == []
    card = await handle.wait_original()
    assert card.embeds[0]["title"]
    await handle.wait_file()
    assert len(eleven.generations) == 1


async def test_regenerate_answers_at_once_while_the_database_is_stuck(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    fake.auto_advance = True
    await start_patient(encore)
    first = await sim.user("alice").slash("music generate", prompt="again", duration=2)
    card = await first.wait_original(status_is("Done"))
    async with database_locked(encore):
        click = await sim.user("alice").click(card, f"encore:regen:{job_id_of(card)}")
        await answered_while_stuck(sim, click)
    new_card = await click.wait_original()
    assert new_card.id != card.id
    assert new_card.embeds[0]["title"] == "again"
    await click.wait_file()


async def test_a_refusal_after_the_defer_is_private_and_the_thinking_message_goes(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    encore.configure(limits={"user_daily_jobs": 1})
    await encore.start()
    bob = sim.user("bob")
    await (await bob.slash("music generate", prompt="one", duration=2)).wait_original()
    handle = await bob.slash("music generate", prompt="two", duration=2)
    assert (await handle.wait_response()).type == 5
    refused = await handle.wait_message()
    assert refused.is_ephemeral
    assert "You've made 1 of your 1 tracks today" in refused.content
    assert handle.original is not None
    assert handle.original.deleted  # nobody is left looking at "Encore is thinking…"
    assert len(fake.predictions) == 1


async def test_cancel_answers_at_once_while_the_database_is_stuck(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    await start_patient(encore)
    alice = sim.user("alice")
    card = await (await alice.slash("music generate", prompt="second thoughts", duration=2)).wait_original()
    pid = await fake.wait_for_prediction()
    async with database_locked(encore):
        handle = await alice.slash("music cancel", job=job_id_of(card))
        response = await handle.wait_response()
        assert response.type == 5
        assert response.message is not None
        assert response.message.is_ephemeral  # only the canceller sees "thinking…"
        sim.clock.advance(STUCK_S)
    reply = await handle.wait_original()
    assert reply.is_ephemeral
    assert f"Canceled job `{job_id_of(card)}`" in reply.content
    await fake.wait_for_status(pid, "canceled")
