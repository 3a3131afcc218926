"""Canceling from Discord: the card's button and `/music cancel`, and who may use them."""

from __future__ import annotations

import asyncio

import pytest

from bot.records import JobStatus
from tests.e2e.conftest import Encore, card_status, job_id_of, status_is
from tests.fakes.discord import DiscordSimulator
from tests.fakes.replicate import FakeReplicate

# A key job flow: it runs on both storage backends (tests/conftest.py).
pytestmark = pytest.mark.both_backends


async def start_job(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate, user: str = "alice"):
    await encore.start()
    handle = await sim.user(user).slash("music generate", prompt="slow jazz")
    pid = await fake.wait_for_prediction()
    await fake.begin(pid)
    card = await handle.wait_original(status_is("Generating"))
    return handle, card, pid


async def test_requester_cancels_with_the_button(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    handle, card, pid = await start_job(encore, sim, fake)
    click = await sim.user("alice").click(card, f"encore:cancel:{job_id_of(card)}")
    assert (await click.wait_response()).type == 6  # acknowledged silently; the card says the rest
    canceled = await handle.wait_original(status_is("Canceled"))
    assert "Canceled by the requester." in card_status(canceled)
    assert canceled.custom_ids() == []
    assert (await fake.wait_for_status(pid)).status == "canceled"
    assert handle.followups == []  # no audio


async def test_other_users_are_politely_refused(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    handle, card, pid = await start_job(encore, sim, fake)
    click = await sim.user("bob").click(card, f"encore:cancel:{job_id_of(card)}")
    refusal = await click.wait_original()
    assert refusal.is_ephemeral
    assert "Only the person who asked for this track" in refusal.content
    assert fake.prediction(pid).status == "processing"
    await fake.succeed(pid)
    await handle.wait_file()  # the job carries on for alice


async def test_moderators_may_cancel_anyones_job(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    handle, card, pid = await start_job(encore, sim, fake)
    await sim.user("mod").click(card, f"encore:cancel:{job_id_of(card)}")
    canceled = await handle.wait_original(status_is("Canceled"))
    assert "Canceled by a moderator." in card_status(canceled)
    assert (await fake.wait_for_status(pid)).status == "canceled"


async def test_cancel_command_with_and_without_a_job_id(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    handle, card, _ = await start_job(encore, sim, fake)
    job_id = job_id_of(card)
    alice = sim.user("alice")

    choices = await (await alice.autocomplete("music cancel", "job", "")).wait_choices()
    assert [c["value"] for c in choices] == [job_id]
    assert choices[0]["name"].startswith(f"{job_id} · slow jazz")

    reply = await (await alice.slash("music cancel", job=job_id)).wait_original()
    assert reply.is_ephemeral
    assert f"Canceled job `{job_id}`" in reply.content
    await handle.wait_original(status_is("Canceled"))

    again = await (await alice.slash("music cancel", job=job_id)).wait_original()
    assert "already canceled" in again.content
    nothing = await (await alice.slash("music cancel")).wait_original()
    assert "no jobs in progress" in nothing.content
    unknown = await (await alice.slash("music cancel", job="nosuchjob")).wait_original()
    assert "can't find that job" in unknown.content


async def test_cancel_command_picks_the_latest_job(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    handle, card, _ = await start_job(encore, sim, fake)
    reply = await (await sim.user("alice").slash("music cancel")).wait_original()
    assert job_id_of(card) in reply.content
    await handle.wait_original(status_is("Canceled"))
    assert encore.bot is not None
    assert (await encore.bot.service.get(job_id_of(card))).status == JobStatus.CANCELED


async def test_cancel_button_works_after_a_restart(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    _handle, card, pid = await start_job(encore, sim, fake)
    await encore.restart()  # a new client: the button must be found by its custom id alone
    await sim.user("alice").click(card, f"encore:cancel:{job_id_of(card)}")
    canceled = await sim.wait_for_edit(card.id, status_is("Canceled"))
    assert "Canceled by the requester." in card_status(canceled)
    assert (await fake.wait_for_status(pid)).status == "canceled"


async def test_cancel_racing_completion_through_discord(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    handle, card, pid = await start_job(encore, sim, fake)
    click, _ = await asyncio.gather(
        sim.user("alice").click(card, f"encore:cancel:{job_id_of(card)}"), fake.succeed(pid)
    )
    await click.wait_response()
    final = await handle.wait_original(lambda m: "Done" in card_status(m) or "Canceled" in card_status(m))
    audio = [m for m in handle.followups if m.attachments]
    if "Done" in card_status(final):
        assert len(audio) == 1  # completion won: delivered once, the cancel was refused
        refusal = await click.wait_message(lambda m: "already" in m.content)
        assert refusal.is_ephemeral
    else:
        assert audio == []  # the cancel won: nothing is posted
        assert encore.bot is not None
        job = await encore.bot.service.get(job_id_of(card))
        assert job.output_path is None
