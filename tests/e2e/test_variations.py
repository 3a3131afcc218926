"""Each variation is a track of its own: a finished batch card has a row of buttons per variation (Extend,
Variations, Stems, Info), from the batch's own message, after restarts too.

Two servers, as in test_phone: "home", where alice makes her batches (bob is a member), and "away", where eve
is (not in home at all) and alice and bob are too. Every message the bot sent passed Discord's official spec
and its rules beyond it (5 action rows of 5 components, custom ids of 100 characters at most): the ``sim``
fixture checks that after each test.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot.records import Job
from bot.storage.stats_repo import StatsRepo
from tests.e2e.conftest import Encore, card_field, default_guild, job_id_of, status_is
from tests.e2e.test_lineage import lineage
from tests.fakes.discord import DiscordSimulator, InteractionHandle, SimUser
from tests.fakes.discord.errors import SimulatorError
from tests.fakes.discord.models import ChannelConfig, GuildConfig, MemberConfig, SimMessage
from tests.fakes.elevenlabs import FakeElevenLabs
from tests.fakes.replicate import FakeReplicate

ACTIONS = ("extend", "vary", "stems", "info")
LABELS = ("Extend +10s", "Variations", "Stems", "Info")


@pytest.fixture
def guilds() -> list[GuildConfig]:
    home = default_guild(name="home")
    away = GuildConfig(
        name="away",
        channels=[ChannelConfig("lobby")],
        members=[MemberConfig("eve"), MemberConfig("alice"), MemberConfig("bob")],
    )
    return [home, away]


def away(sim: DiscordSimulator, name: str) -> SimUser:
    return sim.user(name, guild_id=sim.guilds[1].id)


# -- reading a batch card ---------------------------------------------------------------------------------


def lead_of(card: SimMessage) -> str:
    """The job id in a batch card's footer ("Job <id> · 3 variations")."""
    return str(card.embeds[0]["footer"]["text"]).split(" · ")[0].removeprefix("Job ")


def rows(card: SimMessage) -> list[list[dict[str, Any]]]:
    """The card's action rows, each the buttons in it."""
    assert all(row["type"] == 1 for row in card.components)
    return [list(row["components"]) for row in card.components]


def labels(card: SimMessage) -> list[list[str]]:
    return [[button["label"] for button in row] for row in rows(card)]


def button(card: SimMessage, number: int, action: str) -> str:
    """The custom id of ``action`` in variation ``number``'s row."""
    [found] = [
        b["custom_id"]
        for row in rows(card)
        for b in row
        if b["label"].startswith(f"{number} · ") and b["custom_id"].startswith(f"encore:var:{action}:")
    ]
    return found


async def variations_of(encore: Encore, card: SimMessage) -> list[Job]:
    assert encore.bot is not None
    _, _, members = await encore.bot.service.card(lead_of(card))
    return members


async def finished_batch(user: SimUser, count: int, **options: Any) -> SimMessage:
    """A batch of ``count`` variations, delivered: its Done card."""
    handle = await user.slash(
        "music generate", options={"prompt": "night market", "duration": 2, **options}, count=count
    )
    await handle.wait_message(lambda m: sum(a.filename.endswith(".wav") for a in m.attachments) == count)
    return await handle.wait_original(status_is("Done"))


async def private(handle: InteractionHandle) -> str:
    """The private line that answers a click."""
    reply = await handle.wait_message(lambda m: bool(m.content))
    assert reply.is_ephemeral, reply.content
    return reply.content


# -- a row per variation ----------------------------------------------------------------------------------


async def test_a_batch_card_has_a_row_per_variation(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    fake.auto_advance = True
    await encore.start()
    card = await finished_batch(sim.user("alice"), 4, seed=500)
    ids = [job.id for job in await variations_of(encore, card)]
    lead = lead_of(card)
    assert labels(card) == [
        ["Regenerate", "Info", "Delete"],  # the card's own buttons, as before
        *[[f"{n} · {label}" for label in LABELS] for n in (1, 2, 3, 4)],
    ]
    assert [[b["custom_id"] for b in row] for row in rows(card)] == [
        [f"encore:{a}:{lead}" for a in ("regen", "info", "delete")],
        *[[f"encore:var:{a}:{job_id}" for a in ACTIONS] for job_id in ids],
    ]
    assert len(card.components) == 5  # Discord's limit, with 4 variations: full
    assert not any(b.get("disabled") for row in rows(card) for b in row)
    variations = card_field(card, "Variations") or ""
    assert "2 · seed 501 · `" in variations
    assert "its own row of buttons" in variations
    assert "/music show" not in variations  # no more copying an id


async def test_each_variation_acts_as_its_own_track(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate, eleven: FakeElevenLabs
) -> None:
    fake.auto_advance = True
    bot = await encore.start()
    alice = sim.user("alice")
    card = await finished_batch(alice, 3, seed=700)
    one, two, three = await variations_of(encore, card)

    # Extend on variation 2 continues variation 2: the next part of its chain, 10 s longer
    extended = await alice.click(card, button(card, 2, "extend"))
    card2 = await extended.wait_original(status_is("Done"))
    text, _ = await lineage(alice, card2)
    assert text == f"part 2, continuing `{two.id}`"
    assert card_field(card2, "Track") == "Part 2 · total 0:12 (+10 s)"
    assert (await bot.service.get(job_id_of(card2))).context["parent"] == two.id

    # Info for variation 3 shows variation 3, privately
    info = await (await alice.click(card, button(card, 3, "info"))).wait_original()
    assert info.is_ephemeral
    assert info.embeds[0]["title"] == f"Job {three.id}"
    assert {f["name"]: f["value"] for f in info.embeds[0]["fields"]}["Seed"] == "702"

    # Stems for variation 1 split variation 1's track
    split = await alice.click(card, button(card, 1, "stems"))
    stems = await split.wait_message(lambda m: len(m.attachments) == 6)
    assert len(stems.attachments) == 6
    stems_card = await split.wait_original(status_is("Done"))
    assert (await bot.service.get(job_id_of(stems_card))).context["parent"] == one.id
    [separation] = eleven.separations
    assert one.output_path is not None
    assert separation.file == await asyncio.to_thread(Path(one.output_path).read_bytes)

    # Variations from variation 2: a new batch of three, each made again from variation 2's request
    varied = await alice.click(card, button(card, 2, "vary"))
    await varied.wait_message(lambda m: sum(a.filename.endswith(".wav") for a in m.attachments) == 3)
    new_card = await varied.wait_original(status_is("Done"))
    new = await variations_of(encore, new_card)
    assert [m.context["regenerated_from"] for m in new] == [two.id] * 3
    assert {m.prompt for m in new} == {"night market"}
    assert 701 not in {m.seed for m in new}  # new seeds
    assert len(rows(new_card)) == 1 + 3  # and it is a batch card with its own rows


async def test_the_rows_work_after_a_restart(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    fake.auto_advance = True
    await encore.start()
    alice = sim.user("alice")
    card = await finished_batch(alice, 2, seed=900)
    one, two = await variations_of(encore, card)
    await encore.restart()
    info = await (await alice.click(card, button(card, 2, "info"))).wait_original()
    assert info.embeds[0]["title"] == f"Job {two.id}"
    extended = await alice.click(card, button(card, 1, "extend"))
    card2 = await extended.wait_original(status_is("Done"))
    text, _ = await lineage(alice, card2)
    assert text == f"part 2, continuing `{one.id}`"


# -- the other side ---------------------------------------------------------------------------------------


async def test_nobody_from_another_server_uses_a_variation(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    fake.auto_advance = True
    await encore.start()
    card = await finished_batch(sim.user("alice"), 2, prompt="home secret")
    _, two = await variations_of(encore, card)
    # alice may show her batch in away: the card, with its rows
    shown = await (await away(sim, "alice").slash("music show", job=two.id)).wait_original(status_is("Done"))
    assert labels(shown) == labels(card)
    predictions, jobs = len(fake.predictions), await stored(encore)
    for name in ("eve", "bob"):  # eve isn't in home at all; bob is, but acts in away
        for action in ACTIONS:
            reply = await private(await away(sim, name).click(shown, button(shown, 2, action)))
            assert "Only the person who asked for this track can" in reply, (name, action)
            assert "outside the server it was made in" in reply
            assert "home secret" not in reply
    assert (len(fake.predictions), await stored(encore)) == (predictions, jobs)  # nothing made
    lobby = sim.channel("lobby", guild_id=sim.guilds[1].id).id
    assert [m.id for m in sim.messages if m.channel_id == lobby and not m.is_ephemeral] == [shown.id]

    # in home, bob may: he can see the batch's channel
    info = await (await sim.user("bob").click(card, button(card, 2, "info"))).wait_original()
    assert info.embeds[0]["title"] == f"Job {two.id}"


async def test_a_failed_variation_has_no_controls(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    await encore.start()
    alice = sim.user("alice")
    handle = await alice.slash("music generate", prompt="three takes", duration=2, count=3, seed=800)
    for _ in range(3):
        pid = await fake.wait_for_prediction()
        if fake.prediction(pid).input["seed"] == 802:
            await fake.fail(pid)
        else:
            await fake.succeed(pid)
    card = await handle.wait_original(status_is("Done"))
    one, _, three = await variations_of(encore, card)
    assert labels(card)[1:] == [
        [f"1 · {label}" for label in LABELS],
        [f"2 · {label}" for label in LABELS],
        ["3 · failed"],
    ]
    [[failed]] = rows(card)[3:]
    assert failed["disabled"] is True
    assert failed["custom_id"] == f"encore:var:info:{three.id}"
    with pytest.raises(SimulatorError, match="disabled"):  # Discord's clients don't let anyone click it
        await alice.click(card, failed["custom_id"])

    # a click that comes anyway (a modified client) is answered privately, and makes nothing; discord.py itself
    # drops clicks on a custom id the message doesn't carry, so this button's is the one that can come
    predictions, jobs = len(fake.predictions), await stored(encore)
    reply = await private(await alice.forge_click(card, failed["custom_id"]))
    assert reply == (
        "Variation 3 of this batch failed, so there is no track to show. "
        "The model failed to make this track. Try a different prompt or settings."  # why, as its card said
    )
    assert (len(fake.predictions), await stored(encore)) == (predictions, jobs)

    # the variations that worked still do
    info = await (await alice.click(card, button(card, 1, "info"))).wait_original()
    assert info.embeds[0]["title"] == f"Job {one.id}"


async def test_a_double_click_makes_what_a_single_tracks_button_makes(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    """With one job in flight per person, a double click on Extend makes one job and refuses the other click,
    on a variation's row exactly as on a single track's card."""
    encore.configure(limits={"user_jobs_in_flight": 1})
    fake.auto_advance = True
    await encore.start()
    alice = sim.user("alice")
    solo = await (await alice.slash("music generate", prompt="solo", duration=2)).wait_original(status_is("Done"))
    card = await finished_batch(alice, 3)
    _, two, _ = await variations_of(encore, card)
    fake.auto_advance = False  # what the first click starts stays in flight
    for _ in range(1 + 3):  # the predictions made so far
        await fake.wait_for_prediction()

    async def double_click(message: SimMessage, custom_id: str) -> tuple[int, list[str]]:
        before = await stored(encore)
        clicks = await asyncio.gather(alice.click(message, custom_id), alice.click(message, custom_id))
        answers = [await click.wait_message(lambda m: bool(m.content or m.embeds)) for click in clicks]
        made = await stored(encore) - before
        [accepted] = [click for click, answer in zip(clicks, answers, strict=True) if not answer.is_ephemeral]
        await fake.succeed(await fake.wait_for_prediction())  # the job it made finishes: nothing left in flight
        await accepted.wait_original(status_is("Done"))
        return made, [answer.content for answer in answers if answer.is_ephemeral]

    single = await double_click(solo, f"encore:extend:{job_id_of(solo)}")
    variation = await double_click(card, button(card, 2, "extend"))
    assert single[0] == variation[0] == 1
    assert len(variation[1]) == 1
    assert variation[1] == single[1]  # the same refusal, word for word
    [made] = [job for job in await jobs_of(encore, alice) if job.context.get("parent") == two.id]
    assert made.part == 2


async def stored(encore: Encore) -> int:
    """How many jobs there are in the database."""
    assert encore.bot is not None
    counts = await StatsRepo(encore.bot.core.db).counts_by_model_and_status()
    return sum(count for _, _, count in counts)


async def jobs_of(encore: Encore, user: SimUser) -> list[Job]:
    assert encore.bot is not None
    return await encore.bot.service.jobs_of(user.id, limit=100)
