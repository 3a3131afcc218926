"""People's text through Discord: blocked words on every text that reaches a provider or a card, however it
is disguised; links in people's text shown as typed, never as masked links; and what Info says a job cost."""

from __future__ import annotations

import json

import pytest

from bot.catalog import ELEVENLABS_STEMS
from tests.disguises import full_width, math_bold
from tests.e2e.conftest import Encore, accepted, card_field, job_id_of, status_is
from tests.e2e.test_audio_in import voice_message
from tests.e2e.test_plans import plan_id_of
from tests.e2e.test_stems import TRACK
from tests.fakes.discord import DiscordSimulator
from tests.fakes.discord.markdown import live_links
from tests.fakes.discord.models import SimMessage
from tests.fakes.discord.users import SimUser
from tests.fakes.elevenlabs import FakeElevenLabs
from tests.fakes.models import DEMUCS
from tests.fakes.replicate import FakeReplicate

BLOCKED = {"blocked_words": ["forbidden"]}
REFUSED = "uses a word this server doesn't allow"
LYRICS = "Lyrics (one line each; empty: instrumental)"
EVIL = "[click me](https://evil.example/login)"


def everything_the_bot_posted(sim: DiscordSimulator) -> list[SimMessage]:
    """Every version of every message the bot posted, edits included."""
    return [event.message for event in sim.state.message_events.items if event.message.author_id == sim.bot_id]


def posted_text(sim: DiscordSimulator) -> str:
    return json.dumps([[m.content, m.embeds] for m in everything_the_bot_posted(sim)], ensure_ascii=False).casefold()


async def set_blocked_words(sim: DiscordSimulator, words: str) -> None:
    """The server's admin adds blocked words with /musicadmin settings."""
    boss = sim.user("boss")
    card = await (await boss.slash("musicadmin settings")).wait_original()
    picked = await boss.select(card, f"encore:admin:{sim.guild.id}", ["blocked_words"])
    form = await picked.wait_modal()
    field = form["components"][0]
    inner = field.get("component") or field["components"][0]
    reply = await (await boss.submit_modal(picked, {inner["custom_id"]: words})).wait_original()
    assert "**blocked_words** is now" in reply.content


async def plan_card(user: SimUser, prompt: str) -> SimMessage:
    handle = await user.slash("music plan", prompt=prompt, length=12)
    return await handle.wait_original(lambda m: bool(m.embeds))


async def edit_first_section(user: SimUser, card: SimMessage, values: dict[str, str]) -> SimMessage:
    """Open the first section's form on a plan card, submit ``values``; the answer."""
    opened = await user.select(card, f"encore:planedit:{plan_id_of(card)}", ["0"])
    await opened.wait_modal()
    return await (await user.submit_modal(opened, values)).wait_original()


# -- blocked words on every text --------------------------------------------------------------------


async def test_blend_with_a_blocked_prompt_b_is_refused_privately(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    encore.configure(safety=BLOCKED)
    await encore.start()
    bob = sim.user("bob")
    refused = await (await bob.slash("music blend", prompt_a="church bells", prompt_b="forbidden beats")).wait_message()
    assert refused.is_ephemeral
    assert f"That `prompt_b` {REFUSED}" in refused.content
    assert fake.predictions == {}
    allowed = await bob.slash("music blend", prompt_a="church bells", prompt_b="electronic beats")
    await accepted(allowed)  # the same blend without the word is made
    prediction = fake.prediction(await fake.wait_for_prediction())
    assert prediction.input["prompt_b"] == "electronic beats"
    assert len(fake.predictions) == 1


async def test_text_options_are_checked(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    encore.configure(safety=BLOCKED)
    await encore.start()
    refused = await (
        await sim.user("bob").slash(
            "music generate",
            options={
                "prompt": "rain",
                "model": "stable-audio",
                "options": "negative_prompt=" + full_width("forbidden"),
            },
        )
    ).wait_message()
    assert refused.is_ephemeral
    assert f"That `negative_prompt` {REFUSED}" in refused.content
    assert fake.predictions == {}


@pytest.mark.parametrize(
    "prompt",
    [
        "forb\u200bidden drums",  # a zero-width space inside the word
        full_width("forbidden") + " drums",  # full-width letters
        math_bold("forbidden") + " drums",  # mathematical bold
        "fo\u0301rbi\u0301dden drums",  # combining accents
    ],
    ids=["zero-width", "full-width", "math-bold", "combining"],
)
async def test_disguised_words_are_refused_privately(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate, prompt: str
) -> None:
    encore.configure(safety=BLOCKED)
    await encore.start()
    refused = await (await sim.user("bob").slash("music generate", prompt=prompt)).wait_message()
    assert refused.is_ephemeral
    assert f"That prompt {REFUSED}" in refused.content
    assert fake.predictions == {}


async def test_the_servers_own_words_catch_disguises_too(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    await encore.start()
    await set_blocked_words(sim, "kiwi")
    refused = await (
        await sim.user("bob").slash("music generate", prompt=full_width("ki") + "\u200b" + full_width("wi") + " song")
    ).wait_message()
    assert refused.is_ephemeral
    assert REFUSED in refused.content
    assert fake.predictions == {}


async def test_legitimate_text_still_passes(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    encore.configure(safety={"blocked_words": ["ass", "forbidden"]})
    await encore.start()
    prompts = ["classical bass, brass and a passacaglia", "गर्मी की बारिश", "日本の夏祭り", "Ελληνική μουσική"]
    for prompt in prompts:
        handle = await sim.user("bob").slash("music generate", prompt=prompt, duration=2)
        card = await handle.wait_original()
        assert not card.is_ephemeral
        assert card.embeds[0]["title"] == prompt
    sent = [fake.prediction(await fake.wait_for_prediction()).input["prompt"] for _ in prompts]
    assert sent == prompts


async def test_a_plan_section_edited_to_a_disguised_word_is_refused(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs
) -> None:
    encore.configure(safety=BLOCKED)
    await encore.start()
    alice = sim.user("alice")
    card = await plan_card(alice, "an indie song about rain")
    for values in (
        {"Name": "Verse", "Seconds (3-120)": "6", LYRICS: "drip drop\nFORB\u00adIDDEN love"},
        {"Name": full_width("forbidden") + " verse", "Seconds (3-120)": "6"},
        {"Name": "Verse", "Seconds (3-120)": "6", "Styles (comma-separated)": "piano, forb\u200bidden"},
    ):
        reply = await edit_first_section(alice, card, values)
        assert reply.is_ephemeral
        assert REFUSED in reply.content
    assert sim.message(card.id).embeds == card.embeds  # the plan is as it was
    assert "forbidden" not in json.dumps(sim.message(card.id).embeds).casefold()
    compose = await alice.click(card, f"encore:plancompose:{plan_id_of(card)}")
    await compose.wait_file()
    [generation] = eleven.generations
    assert generation.composition_plan == eleven.plans[0].plan  # none of the refused edits reached it


async def test_composing_a_plan_whose_lyrics_have_a_blocked_word_is_refused(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs
) -> None:
    await encore.start()
    alice = sim.user("alice")
    card = await plan_card(alice, "a song about fruit")
    done = await edit_first_section(alice, card, {"Name": "Verse", "Seconds (3-120)": "6", LYRICS: "a kiwi for you"})
    assert "updated" in done.content
    await set_blocked_words(sim, "kiwi")  # the server's rules change before it is composed
    refused = await (await alice.click(card, f"encore:plancompose:{plan_id_of(card)}")).wait_message()
    assert refused.is_ephemeral
    assert f"That lyric line {REFUSED}" in refused.content
    assert eleven.generations == []
    refused_plan = await (await alice.slash("music plan", prompt="more KIWI please")).wait_original()
    assert refused_plan.is_ephemeral  # refused before the plan was asked for, and privately
    assert f"That prompt {REFUSED}" in refused_plan.content
    assert len(eleven.plans) == 1


async def test_a_reply_with_a_blocked_word_posts_no_card(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    fake.auto_advance = True
    encore.configure(safety=BLOCKED)
    await encore.start()
    alice = sim.user("alice")
    first = await alice.slash("music generate", prompt="base track", duration=3)
    await first.wait_file()
    delivered = next(m for m in first.followups if m.attachments)
    mark = sim.mark()
    reply = await alice.send_message(
        "make it " + full_width("forbidden") + " +6s", reply_to=delivered, mention_bot=True
    )
    answer = await sim.wait_for_message(reply.channel_id, lambda m: m.reply_to == reply.id, since=mark)
    assert REFUSED in answer.content
    assert not answer.embeds
    assert full_width("forbidden") not in posted_text(sim)  # no card ever showed it
    assert len(fake.predictions) == 1


async def test_a_continuation_prompt_is_refused_privately(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    encore.configure(safety=BLOCKED)
    await encore.start()
    alice = sim.user("alice")
    message = await alice.send_message("listen to this", files=[voice_message(2)])
    opened = await alice.message_command("Continue this track", message)
    await opened.wait_modal()
    submitted = await alice.submit_modal(opened, {"Prompt (optional)": "Forbidden strings"})
    reply = await submitted.wait_original()
    assert reply.is_ephemeral
    assert REFUSED in reply.content
    assert fake.predictions == {}


# -- links in people's text -----------------------------------------------------------------------


async def test_a_masked_link_in_a_prompt_shows_as_typed(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    fake.auto_advance = True
    await encore.start()
    alice = sim.user("alice")
    handle = await alice.slash("music generate", prompt=f"lofi {EVIL} beat", duration=2)
    await handle.wait_file()
    card = await handle.wait_original(status_is("Done"))
    assert card.embeds[0]["title"] == r"lofi \[click me\](https://evil.example/login) beat"
    info = await (await alice.click(card, f"encore:info:{job_id_of(card)}")).wait_original()
    history = await (await alice.slash("music history")).wait_original()
    blend = await alice.slash("music blend", prompt_a=f"bells {EVIL}", prompt_b=f"beats {EVIL}")
    await blend.wait_file()
    blend_card = await blend.wait_original(status_is("Done"))
    assert "evil.example" in (card_field(blend_card, "Blended with") or "")
    assert "evil.example" in json.dumps(info.embeds) + json.dumps(history.embeds)
    delivered = [m for m in everything_the_bot_posted(sim) if m.attachments and m.content]
    assert delivered
    assert "<https://evil.example/login>" in delivered[0].content  # readable, but no link preview
    for message in everything_the_bot_posted(sim):
        assert live_links(message.content, message.embeds) == [], message


async def test_a_masked_link_in_a_plan_shows_as_typed(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs
) -> None:
    await encore.start()
    alice = sim.user("alice")
    card = await plan_card(alice, f"a song {EVIL}")
    mark = sim.mark()
    values = {"Name": f"Verse {EVIL}", "Seconds (3-120)": "6", "Styles (comma-separated)": EVIL, LYRICS: EVIL}
    done = await edit_first_section(alice, card, values)
    assert "evil.example" in done.content
    card = await sim.wait_for_edit(card.id, lambda m: "Verse" in json.dumps(m.embeds), since=mark)
    assert "evil.example" in json.dumps(card.embeds)
    for message in everything_the_bot_posted(sim):
        assert live_links(message.content, message.embeds) == [], message


# -- Info: what a job cost --------------------------------------------------------------------------


async def test_info_shows_the_actual_cost_once_the_job_ran(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    fake.auto_advance = True
    encore.configure(limits={"replicate_usd_per_s": 100.0})  # so a fake's split second costs cents
    await encore.start()
    alice = sim.user("alice")
    handle = await alice.slash("music generate", prompt="lofi", duration=2)
    await handle.wait_file()
    card = await handle.wait_original(status_is("Done"))
    [prediction] = fake.predictions.values()
    predict_time = prediction.to_json(fake.base_url)["metrics"]["predict_time"]
    info = await (await alice.click(card, f"encore:info:{job_id_of(card)}")).wait_original()
    assert info.is_ephemeral
    assert card_field(info, "Cost") == f"${round(predict_time * 100.0, 6):.4f} (actual)"


async def test_info_on_stems_from_demucs_shows_replicates_figure(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    fake.auto_advance = True
    encore.configure(
        stems={"provider": "replicate", "demucs_ref": f"{DEMUCS.ref}:{DEMUCS.versions[0]}"},
        limits={"replicate_usd_per_s": 100.0},
    )
    await encore.start()
    alice = sim.user("alice")
    handle = await alice.slash("music stems", audio=TRACK, stems="two")
    await handle.wait_message(lambda m: len(m.attachments) == 4)
    card = await handle.wait_original(status_is("Done"))
    [prediction] = fake.predictions.values()
    predict_time = prediction.to_json(fake.base_url)["metrics"]["predict_time"]
    info = await (await alice.click(card, f"encore:info:{job_id_of(card)}")).wait_original()
    assert card_field(info, "Cost") == f"${round(predict_time * 100.0, 6):.4f} (actual)"


async def test_info_on_elevenlabs_stems_says_the_cost_is_estimated(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs
) -> None:
    await encore.start()
    alice = sim.user("alice")
    handle = await alice.slash("music stems", audio=TRACK, stems="two")
    await handle.wait_message(lambda m: len(m.attachments) == 2)
    card = await handle.wait_original(status_is("Done"))
    info = await (await alice.click(card, f"encore:info:{job_id_of(card)}")).wait_original()
    assert card_field(info, "Cost") == f"about ${ELEVENLABS_STEMS.cost_per_run_usd:.3f} (estimated)"
