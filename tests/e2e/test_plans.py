"""Composition plans end to end: plan -> edit, add and remove sections -> compose; and compose again later."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Encore, card_field, configure_as_shipped, job_id_of, status_is
from tests.fakes.audio import audio_info
from tests.fakes.discord import DiscordSimulator
from tests.fakes.discord.models import SimMessage
from tests.fakes.elevenlabs import FakeElevenLabs, plan_length_ms


def plan_id_of(card: SimMessage) -> str:
    return card.embeds[0]["footer"]["text"].split()[1]


def section_names(card: SimMessage) -> list[str]:
    return [field["name"].split(". ", 1)[1].rsplit(" · ", 1)[0] for field in card.embeds[0]["fields"]]


@pytest.mark.both_backends  # a key job flow, on both storage backends
@pytest.mark.parametrize("model_id", ["music_v1", "music_v2"])
async def test_plan_edit_compose(encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs, model_id: str) -> None:
    encore.configure(elevenlabs={"model_id": model_id})
    await encore.start()
    alice = sim.user("alice")
    handle = await alice.slash("music plan", prompt="an indie song about rain on Sunday", length=24)
    card = await handle.wait_original(lambda m: bool(m.embeds) and m.embeds[0]["title"].startswith("Plan:"))
    plan_id = plan_id_of(card)
    assert len(eleven.plans) == 1
    first_name = section_names(card)[0]

    mark = sim.mark()
    opened = await alice.select(card, f"encore:planedit:{plan_id}", ["0"])
    form = await opened.wait_modal()
    assert form["title"] == "Edit section"
    done = await alice.submit_modal(
        opened,
        {
            "Name": "Big intro",
            "Seconds (3-120)": "6",
            "Styles (comma-separated)": "piano, rain sounds",
            "Lyrics (one line each; empty: instrumental)": "drip drop\non the window",
        },
    )
    assert "updated" in (await done.wait_original()).content
    card = await sim.wait_for_edit(card.id, lambda m: "Big intro" in str(m.embeds), since=mark)
    assert section_names(card)[0] == "Big intro"
    assert first_name != "Big intro"

    for name in ("Bridge", "Outro"):
        mark = sim.mark()
        adding = await alice.click(card, f"encore:planadd:{plan_id}")
        await adding.wait_modal()
        await alice.submit_modal(adding, {"Name": name, "Seconds (3-120)": "5"})
        card = await sim.wait_for_edit(card.id, lambda m, name=name: name in str(m.embeds), since=mark)
    count = len(section_names(card))
    assert section_names(card)[-2:] == ["Bridge", "Outro"]

    mark = sim.mark()
    removing = await alice.select(card, f"encore:planremove:{plan_id}", [str(count - 2)])  # the Bridge
    assert (await removing.wait_response()).type == 7
    card = await sim.wait_for_edit(card.id, lambda m: len(m.embeds[0]["fields"]) == count - 1, since=mark)
    names = section_names(card)
    assert names[0] == "Big intro"
    assert names[-1] == "Outro"
    assert "Bridge" not in names

    refused = await (await sim.user("bob").click(card, f"encore:plancompose:{plan_id}")).wait_original()
    assert "Only the person who made this plan" in refused.content

    compose = await alice.click(card, f"encore:plancompose:{plan_id}")
    audio = await compose.wait_file()
    [generation] = eleven.generations
    sent = generation.composition_plan
    assert sent is not None
    if model_id == "music_v1":
        assert [s["section_name"] for s in sent["sections"]] == names
        assert sent["sections"][0]["lines"] == ["drip drop", "on the window"]
        assert sent["sections"][0]["duration_ms"] == 6000
        assert generation.body.get("respect_sections_durations") is True
        total = sum(s["duration_ms"] for s in sent["sections"])
    else:
        assert [c["text"].splitlines()[0] for c in sent["chunks"]] == [f"[{n}]" for n in names]
        assert sent["chunks"][0]["text"] == "[Big intro]\ndrip drop\non the window"
        total = sum(c["duration_ms"] for c in sent["chunks"])
    assert round(audio_info(audio.data).duration_s) == round(total / 1000)
    song_card = await compose.wait_original(status_is("Done"))
    assert card_field(song_card, "Genres")


@pytest.mark.both_backends  # a key job flow, on both storage backends
async def test_compose_again_with_changes(encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs) -> None:
    await encore.start()
    alice = sim.user("alice")
    song = await alice.slash("music song", prompt="a jingle for a bakery", length=5)
    await song.wait_file()
    card = await song.wait_original(status_is("Done"))
    again = await alice.click(card, f"encore:plan:{job_id_of(card)}")
    plan_card = await again.wait_original(lambda m: bool(m.embeds) and m.embeds[0]["title"].startswith("Plan:"))
    compose = await alice.click(plan_card, f"encore:plancompose:{plan_id_of(plan_card)}")
    await compose.wait_file()
    assert len(eleven.generations) == 2
    assert eleven.generations[1].composition_plan == eleven.generations[0].plan


async def test_bad_plan_lengths_are_refused(encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs) -> None:
    await encore.start()
    alice = sim.user("alice")
    card = await (await alice.slash("music plan", prompt="short piece", length=12)).wait_original(
        lambda m: bool(m.embeds)
    )
    opened = await alice.select(card, f"encore:planedit:{plan_id_of(card)}", ["0"])
    await opened.wait_modal()
    done = await alice.submit_modal(opened, {"Name": "Too long", "Seconds (3-120)": "500"})
    assert "between 3 and 120 seconds" in (await done.wait_original()).content


async def test_a_two_minute_plan_composes_with_the_shipped_config(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs
) -> None:
    configure_as_shipped(encore)
    await encore.start()
    alice = sim.user("alice")
    handle = await alice.slash("music plan", prompt="a slow build from piano to full band", length=120)
    card = await handle.wait_original(lambda m: bool(m.embeds) and m.embeds[0]["title"].startswith("Plan:"))
    [planned] = eleven.plans
    assert plan_length_ms(planned.plan) == 120_000
    compose = await alice.click(card, f"encore:plancompose:{plan_id_of(card)}")
    song_card = await compose.wait_original(lambda m: bool(m.embeds))  # a job card, not a refusal
    assert job_id_of(song_card)
    audio = await compose.wait_file(timeout_s=60)  # two minutes of audio: real work, a generous bound
    assert round(audio_info(audio.data).duration_s) == 120
    [generation] = eleven.generations
    assert generation.composition_plan == planned.plan


async def test_a_plan_longer_than_the_cap_is_refused_before_planning(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs
) -> None:
    encore.configure(jobs={"max_duration_s": 60})
    await encore.start()
    handle = await sim.user("alice").slash("music plan", prompt="an epic", length=120)
    refusal = await handle.wait_message(lambda m: bool(m.content))
    assert "between 3 and 60 seconds" in refusal.content
    assert "this bot's limit" in refusal.content
    assert eleven.plans == []


async def test_a_plan_grown_past_ten_minutes_is_refused_at_compose(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs
) -> None:
    await encore.start()
    alice = sim.user("alice")
    handle = await alice.slash("music plan", prompt="a suite in many movements", length=600)
    card = await handle.wait_original(lambda m: bool(m.embeds) and m.embeds[0]["title"].startswith("Plan:"))
    plan_id = plan_id_of(card)
    mark = sim.mark()
    adding = await alice.click(card, f"encore:planadd:{plan_id}")
    await adding.wait_modal()
    await alice.submit_modal(adding, {"Name": "Coda", "Seconds (3-120)": "120"})
    card = await sim.wait_for_edit(card.id, lambda m: "Coda" in str(m.embeds), since=mark)
    refusal = await (await alice.click(card, f"encore:plancompose:{plan_id}")).wait_message()
    assert refusal.is_ephemeral
    assert "This plan lasts 720 seconds" in refusal.content
    assert eleven.generations == []
