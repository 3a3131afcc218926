"""Result cards people can act on: Regenerate, Variations, Extend, Info, Delete; persistent across restarts."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Encore, accepted, card_field, card_status, job_id_of, status_is
from tests.fakes.audio import audio_info, decode_pcm
from tests.fakes.discord import DiscordSimulator
from tests.fakes.discord.models import SimMessage
from tests.fakes.discord.users import OptionValue
from tests.fakes.replicate import FakeReplicate


@pytest.fixture(autouse=True)
def _auto(fake: FakeReplicate) -> None:
    fake.auto_advance = True


async def finished_card(encore: Encore, sim: DiscordSimulator, **options: OptionValue) -> tuple[SimMessage, bytes]:
    await encore.start()
    handle = await sim.user("alice").slash("music generate", options={"prompt": "lofi base", **options})
    audio = await handle.wait_file()
    card = await handle.wait_original(status_is("Done"))
    return card, audio.data


async def test_regenerate_makes_a_new_card_with_a_new_seed(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    card, _ = await finished_card(encore, sim, duration=3, seed=42)
    click = await sim.user("alice").click(card, f"encore:regen:{job_id_of(card)}")
    new_card = await click.wait_original()
    assert new_card.id != card.id
    assert new_card.embeds[0]["title"] == "lofi base"
    audio = await click.wait_file()
    assert round(audio_info(audio.data).duration_s) == 3
    seeds = [prediction.input["seed"] for prediction in fake.predictions.values()]
    assert seeds[0] == 42
    assert seeds[1] != 42


async def test_variations_are_three_new_takes(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    card, _ = await finished_card(encore, sim, duration=2)
    click = await sim.user("alice").click(card, f"encore:vary:{job_id_of(card)}")
    delivery = await click.wait_message(lambda m: len(m.attachments) == 3)
    assert len({a.filename for a in delivery.attachments}) == 3
    assert len(fake.predictions) == 4


async def test_extend_continues_the_track(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    card, original = await finished_card(encore, sim, duration=5)
    click = await sim.user("alice").click(card, f"encore:extend:{job_id_of(card)}")
    audio = await click.wait_file()
    info = audio_info(audio.data)
    assert round(info.duration_s) == 15  # the whole track, 10 s longer
    before = decode_pcm(original, sample_rate=32000, channels=2).data
    after = decode_pcm(audio.data, sample_rate=32000, channels=2).data
    assert after.startswith(before)  # it begins with the original, sample for sample
    card2 = await click.wait_original(status_is("Done"))
    assert card_field(card2, "Track") == "Part 2 · total 0:15 (+10 s)"
    [_, continuation] = fake.predictions.values()
    assert continuation.input["continuation"] is True


async def test_extend_a_long_track_stitches_the_rest_back(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    card, original = await finished_card(encore, sim, duration=28)
    click = await sim.user("alice").click(card, f"encore:extend:{job_id_of(card)}")
    audio = await click.wait_file()
    assert round(audio_info(audio.data).duration_s) == 38  # longer than the model's 30 s window
    [_, continuation] = fake.predictions.values()
    assert continuation.input["duration"] == 30  # the model saw only the last 20 s (+10)
    before = decode_pcm(original, sample_rate=32000, channels=2).data
    after = decode_pcm(audio.data, sample_rate=32000, channels=2).data
    assert after[: len(before) - 64] == before[: len(before) - 64]


async def test_info_shows_every_setting_privately(encore: Encore, sim: DiscordSimulator) -> None:
    card, _ = await finished_card(encore, sim, duration=3, seed=7, options="temperature=0.9")
    info = await (await sim.user("bob").click(card, f"encore:info:{job_id_of(card)}")).wait_original()
    assert info.is_ephemeral
    text = str(info.embeds)
    for expected in ("`temperature` = 0.9", "`duration` = 3", "7", "generated in"):
        assert expected in text
    assert (card_field(info, "Cost") or "").endswith("(actual)")  # it ran: Replicate's figure, not the estimate


async def test_delete_is_for_the_requester_or_moderators(encore: Encore, sim: DiscordSimulator) -> None:
    card, _ = await finished_card(encore, sim, duration=2)
    job_id = job_id_of(card)
    refused = await (await sim.user("bob").click(card, f"encore:delete:{job_id}")).wait_original()
    assert "Only the person who asked" in refused.content
    assert sim.message(card.id) is not None
    assert not sim.message(card.id).deleted
    await (await sim.user("alice").click(card, f"encore:delete:{job_id}")).wait_message(
        lambda m: "Deleted" in m.content
    )
    await sim.wait_for_delete(card.id)
    assert all(m.deleted for m in sim.messages if any(a.filename.endswith(".wav") for a in m.attachments))


async def test_buttons_work_after_a_restart(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    card, _ = await finished_card(encore, sim, duration=4)
    await encore.restart()  # a new process: only the custom id and SQLite know the job
    click = await sim.user("alice").click(card, f"encore:extend:{job_id_of(card)}")
    audio = await click.wait_file()
    assert round(audio_info(audio.data).duration_s) == 14
    assert "Done" in card_status(await click.wait_original(status_is("Done")))


async def test_full_track_posts_the_newest_part_of_the_chain(encore: Encore, sim: DiscordSimulator) -> None:
    card, original = await finished_card(encore, sim, duration=3)
    alice = sim.user("alice")
    extend = await alice.click(card, f"encore:extend:{job_id_of(card)}")
    await extend.wait_file()
    part2 = await extend.wait_original(status_is("Done"))
    again = await alice.click(part2, f"encore:extend:{job_id_of(part2)}")
    await again.wait_file()
    await again.wait_original(status_is("Done"))
    full = await alice.click(card, f"encore:full:{job_id_of(card)}")  # on the first part's card
    message = await full.wait_message(lambda m: bool(m.attachments))
    audio = message.attachments[0]
    assert round(audio_info(audio.data).duration_s) == 23  # 3 + 10 + 10
    assert "part 3" in message.content
    start = decode_pcm(original, sample_rate=32000, channels=2).data
    assert decode_pcm(audio.data, sample_rate=32000, channels=2).data.startswith(start)


async def test_show_reposts_a_card_with_working_buttons(encore: Encore, sim: DiscordSimulator) -> None:
    card, _ = await finished_card(encore, sim, duration=2)
    job_id = job_id_of(card)
    alice = sim.user("alice")
    choices = await (await alice.autocomplete("music show", "job", "")).wait_choices()
    assert [c["value"] for c in choices] == [job_id]
    shown = await (await alice.slash("music show", job=job_id)).wait_original()
    assert shown.id != card.id
    assert "Done" in card_status(shown)
    info = await (await alice.click(shown, f"encore:info:{job_id}")).wait_original()
    assert info.is_ephemeral
    missing = await (await alice.slash("music show", job="nosuchjob")).wait_original()
    assert "can't find that job" in missing.content


async def test_history_pages_through_your_jobs(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    await encore.start()
    alice = sim.user("alice")
    for n in range(12):
        handle = await alice.slash("music generate", prompt=f"track number {n}", duration=1)
        await accepted(handle)  # its card: the job is stored
    first = await (await alice.slash("music history")).wait_original()
    assert first.is_ephemeral
    text = first.embeds[0]["description"]
    assert "track number 11" in text  # newest first
    assert "track number 1 " not in text
    assert first.embeds[0]["footer"]["text"] == "Page 1 of 2 · 12 in all"
    older = [f"encore:history:{alice.id}:1"]
    assert older[0] in first.custom_ids()
    refused = await (await sim.user("bob").click(first, older[0])).wait_original()
    assert "someone else's history" in refused.content
    await encore.restart()  # page buttons keep working in a new process
    turned = await alice.click(first, older[0])
    assert (await turned.wait_response()).type == 7  # the same message, updated
    page2 = await turned.wait_original(lambda m: "Page 2 of 2" in m.embeds[0]["footer"]["text"])
    assert "track number 0" in page2.embeds[0]["description"]
