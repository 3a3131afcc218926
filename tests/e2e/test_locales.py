"""In the language of the server: commands synced with their translations, private replies in the reader's
language (``Interaction.locale``), public cards and deliveries in the server's (``guild_locale``).

Two servers: "home" speaks English, with alice (English), hans (German), ana (Latin American Spanish),
pierre (French, which Encore doesn't have) and greta (German, an admin); "tokyo" speaks Japanese, with yuki
(Japanese) and sam (English).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from bot import locales
from bot.discord.translator import command_texts
from tests.e2e.conftest import Encore, card_field, card_status, default_guild, job_id_of, status_is
from tests.fakes.discord import DiscordSimulator, SimFile
from tests.fakes.discord.commands import command_rules
from tests.fakes.discord.models import GuildConfig, MemberConfig, SimMessage, iter_components
from tests.fakes.elevenlabs import FakeElevenLabs
from tests.fakes.replicate import FakeReplicate


@pytest.fixture
def guilds() -> list[GuildConfig]:
    home = default_guild(
        name="home",
        members=[
            MemberConfig("alice"),
            MemberConfig("hans", locale="de"),
            MemberConfig("ana", locale="es-419"),
            MemberConfig("pierre", locale="fr"),
            MemberConfig("greta", roles=["Admins"], locale="de"),
        ],
    )
    tokyo = default_guild(
        name="tokyo",
        preferred_locale="ja",
        members=[MemberConfig("yuki", locale="ja"), MemberConfig("sam")],
    )
    return [home, tokyo]


def labels(message: SimMessage) -> list[str]:
    return [c["label"] for c in iter_components(message.components) if c.get("label")]


def field_names(message: SimMessage) -> list[str]:
    return [str(f["name"]) for embed in message.embeds for f in embed.get("fields", [])]


def tokyo(sim: DiscordSimulator) -> int:
    return next(g.id for g in sim.state.guilds.values() if g.name == "tokyo")


async def test_commands_are_synced_with_valid_translations(encore: Encore, sim: DiscordSimulator) -> None:
    bot = await encore.start()
    synced = {command.name: command.payload for command in sim.commands_synced(sim.guild.id)}
    music = synced["music"]
    assert music["name_localizations"]["de"] == "musik"
    assert music["name_localizations"]["ja"] == "音楽"
    assert music["description_localizations"]["pt-BR"] == "Faça música a partir de palavras e sons."
    generate = next(o for o in music["options"] if o["name"] == "generate")
    assert generate["name_localizations"]["es-ES"] == "generar"
    prompt = next(o for o in generate["options"] if o["name"] == "prompt")
    assert prompt["name_localizations"] == {
        "de": "beschreibung",
        "es-ES": "descripción",
        "es-419": "descripción",  # Latin American Spanish gets Spain's
        "pt-BR": "descrição",
        "ja": "プロンプト",
    }
    loop = next(o for o in generate["options"] if o["name"] == "loop")
    four = next(c for c in loop["choices"] if c["value"] == 4)
    assert four["name_localizations"]["de"] == "4 Takte"
    assert four["name_localizations"]["ja"] == "4 小節"
    menu = synced["Continue this track"]
    assert menu["name_localizations"]["de"] == "Diesen Track fortsetzen"
    # English has no localizations of its own: the default names are English
    assert "en-US" not in music["name_localizations"]
    # Discord's rules hold for every locale: the simulator checked the PUT against the spec and the name rule
    # (and the sim fixture fails the test if any request was refused); checked here once more, by hand
    assert command_rules(list(synced.values())) == {}

    # the English catalogue holds exactly the command tree's English, so a new option without its entry in
    # en-US.toml (and so in every locale: tests/unit/test_locales.py) fails here
    code = command_texts(bot.tree)
    english = {
        k: v for k, v in locales.catalogues()["en-US"].items() if k.startswith(("commands.", "menus.", "choices."))
    }
    assert sorted(set(code) - set(english)) == [], "command texts missing from en-US.toml"
    assert sorted(set(english) - set(code)) == [], "en-US.toml has command texts the code no longer has"
    assert {k: (code[k], english[k]) for k in code if code[k] != english[k]} == {}


def test_the_simulator_refuses_localizations_discord_refuses() -> None:
    def command(**changes: Any) -> list[dict[str, Any]]:
        option = {"type": 3, "name": "prompt", "description": "what", "name_localizations": {"de": "beschreibung"}}
        return [{"type": 1, "name": "music", "description": "Music.", "options": [{**option, **changes}]}]

    assert command_rules(command()) == {}
    assert command_rules(command(name_localizations={"de": "Beschreibung"}))  # uppercase
    assert command_rules(command(name_localizations={"de": "neue beschreibung"}))  # a space
    assert command_rules(command(name_localizations={"de": "x" * 33}))
    assert command_rules(command(name_localizations={"xx": "beschreibung"}))  # not a Discord locale
    assert command_rules(command(description_localizations={"german": "was"}))
    two = command()
    two[0]["options"].append(
        {"type": 3, "name": "style", "description": "how", "name_localizations": {"de": "beschreibung"}}
    )
    assert command_rules(two)  # two options with one German name
    menu = [{"type": 3, "name": "Continue this track", "name_localizations": {"de": "Diesen Track fortsetzen"}}]
    assert command_rules(menu) == {}  # a message menu's names may have spaces and capitals


async def test_a_german_member_gets_german_private_replies(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    encore.configure(safety={"blocked_words": ["zebra"]})
    await encore.start()
    hans = sim.user("hans")

    help_ = await (await hans.slash("music help")).wait_original()
    assert help_.is_ephemeral
    assert help_.embeds[0]["title"] == "Encore: Musik aus Worten und Klängen"
    assert "**/musik erzeugen**" in help_.embeds[0]["description"]

    nothing = await (await hans.slash("music cancel")).wait_original()
    assert nothing.content == "Du hast keine laufenden Aufträge."

    refused = await (await hans.slash("music generate", prompt="a zebra dancing")).wait_message()
    assert refused.is_ephemeral
    assert (
        refused.content
        == "Dein Text (prompt) enthält ein Wort, das dieser Server nicht erlaubt. Bitte formuliere ihn um."
    )

    # his card is public in an English server: English, whatever his own language
    handle = await hans.slash("music generate", prompt="slow jazz")
    card = await handle.wait_original(status_is("Queued"))
    assert "Model" in field_names(card)
    assert labels(card) == ["Cancel"]

    # someone else's job: the refusal is in the clicker's language, naming the action in it too
    alice_card = await (await sim.user("alice").slash("music generate", prompt="fast jazz")).wait_original(
        status_is("Queued")
    )
    refusal = await (await hans.click(alice_card, f"encore:cancel:{job_id_of(alice_card)}")).wait_original()
    assert refusal.is_ephemeral
    assert refusal.content == "Nur wer diesen Track angefordert hat (oder ein Moderator), darf ihn abbrechen."
    assert fake.predictions  # alice's job is untouched by the refusal


async def test_a_german_member_reads_music_models_in_german(encore: Encore, sim: DiscordSimulator) -> None:
    """/music models: the frame, the description and every help line in German for hans; parameter names,
    formats and numbers as they are. English for alice. The options autocomplete's hints too."""
    await encore.start()
    german = await (await sim.user("hans").slash("music models", model="musicgen")).wait_original()
    [embed] = german.embeds
    assert (
        "Kann: setzt einen Clip fort, folgt der Melodie eines Clips, Text zu Musik. Länge: 1-30 s"
        in embed["description"]
    )
    assert "Formate: wav, mp3. Etwa $0.018 für 8 s bei Replicate." in embed["description"]
    assert "• `temperature`: höher ist abenteuerlicher (0 bis 5; Standard 1)" in embed["description"]
    assert embed["footer"]["text"].startswith("Nutze die Einstellungen in `options:`")
    english = await (await sim.user("alice").slash("music models", model="musicgen")).wait_original()
    assert "• `temperature`: higher is more adventurous (0 to 5; default 1)" in english.embeds[0]["description"]
    # the options autocomplete says what a setting takes in the same words
    hints = await (await sim.user("hans").autocomplete("music generate", "options", "temp")).wait_choices()
    assert [c["name"] for c in hints] == ["temperature=… (0 bis 5)"]
    hints = await (await sim.user("hans").autocomplete("music generate", "options", "top_k=")).wait_choices()
    assert [c["name"] for c in hints] == ["top_k= — top_k: 0 bis 2048"]


async def test_a_japanese_server_gets_japanese_cards(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    await encore.start()
    sam = sim.user("sam", guild_id=tokyo(sim))  # an English-speaking member of the Japanese server
    handle = await sam.slash("music generate", prompt="rainy city pop")
    pid = await fake.wait_for_prediction()
    queued = await handle.wait_original()
    assert queued.embeds[0]["fields"][0]["name"] == "モデル"
    assert labels(queued) == ["キャンセル"]
    await fake.begin(pid)
    await handle.wait_original(lambda m: "生成中" in (card_field(m, "状態") or ""))  # Status: Generating
    await fake.succeed(pid)
    delivered = await handle.wait_message(lambda m: bool(m.attachments))
    assert "トラックができました" in delivered.content  # "your track is ready", to everyone there
    done = await handle.wait_original(lambda m: "完了" in (card_field(m, "状態") or ""))
    assert card_status(done) == ""  # no English "Status" field
    assert {"再生成", "バリエーション", "延長 +10秒", "情報", "削除", "ループにする"} <= set(labels(done))
    assert re.fullmatch(r"ジョブ [a-z0-9]+", done.embeds[0]["footer"]["text"])  # "Job <id>"

    # sam's own private answers stay in his language
    help_ = await (await sam.slash("music help")).wait_original()
    assert help_.embeds[0]["title"] == "Encore: music from words and sounds"


async def test_an_unknown_locale_falls_back_to_english_and_a_variant_to_its_language(
    encore: Encore, sim: DiscordSimulator
) -> None:
    await encore.start()
    pierre = await (await sim.user("pierre").slash("music help")).wait_original()
    assert pierre.embeds[0]["title"] == "Encore: music from words and sounds"
    ana = await (await sim.user("ana").slash("music help")).wait_original()
    assert ana.embeds[0]["title"] == "Encore: música a partir de palabras y sonidos"


async def test_refusals_made_deeper_in_are_in_the_members_language(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    """A file that isn't audio, one that doesn't decode, an option out of its range and the Continue dialog:
    in German for hans, and still English for alice in the same server. Nothing runs."""
    await encore.start()
    hans, alice = sim.user("hans"), sim.user("alice")

    notes = SimFile("notes.txt", b"not audio", "text/plain")
    refused = await (await hans.slash("music melody", audio=notes, prompt="x")).wait_message()
    assert refused.is_ephemeral
    assert refused.content == "`notes.txt` ist keine Audiodatei."
    english = await (await alice.slash("music melody", audio=notes, prompt="x")).wait_message()
    assert english.content == "`notes.txt` isn't an audio file."

    too_hot = await (
        await hans.slash("music generate", options={"prompt": "x", "options": "temperature=99"})
    ).wait_message()
    assert too_hot.is_ephemeral
    assert too_hot.content.startswith("`temperature` muss zwischen ")
    assert too_hot.content.endswith(" liegen (du hast `99` angegeben).")

    # the Continue this track dialog is German, and so is its refusal of a file that doesn't decode
    message = await hans.send_message("hör mal", files=[SimFile("broken.mp3", b"ID3\x00garbage" * 50, "audio/mpeg")])
    opened = await hans.message_command("Continue this track", message)
    dialog = await opened.wait_modal()
    assert dialog["title"] == "Diesen Track fortsetzen"
    submitted = await hans.submit_modal(opened, {"Beschreibung (optional)": "", "Sekunden zum Anhängen (1-20)": "5"})
    broken = await submitted.wait_message(lambda m: "Audio" in m.content)
    assert broken.is_ephemeral
    assert broken.content == "Ich konnte diese Datei nicht als Audio lesen. Ist sie beschädigt oder gar kein Audio?"
    assert fake.predictions == {}


async def test_a_japanese_servers_card_says_why_a_job_failed_in_japanese(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    """Why a job failed is stored in English (the CLI and logs read it); its card in a Japanese server says
    it in Japanese, and an English server's card in English."""
    await encore.start()
    sam = sim.user("sam", guild_id=tokyo(sim))
    handle = await sam.slash("music generate", prompt="rainy city pop")
    pid = await fake.wait_for_prediction()
    await fake.fail(pid)
    failed = await handle.wait_original(lambda m: "失敗" in (card_field(m, "状態") or ""))
    status = card_field(failed, "状態") or ""
    assert "モデルがこのトラックを作れませんでした。別のプロンプトや設定をお試しください。" in status
    assert "The model failed" not in status
    assert "再試行" in labels(failed)  # Retry, as the reason's text says

    alice = await sim.user("alice").slash("music generate", prompt="sunny town pop")
    await fake.fail(await fake.wait_for_prediction())
    english = await alice.wait_original(status_is("Failed"))
    assert "The model failed to make this track. Try a different prompt or settings." in card_status(english)


async def test_info_history_and_defaults_are_in_the_readers_language(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    """**Info** on a card in an English server, ``/music history`` and ``/music prefer``: in German for hans,
    in English for alice, who reads the same card."""
    await encore.start()
    hans, alice = sim.user("hans"), sim.user("alice")
    handle = await hans.slash("music generate", prompt="slow jazz", seed=7)
    pid = await fake.wait_for_prediction()
    await fake.begin(pid)
    await fake.succeed(pid)
    card = await handle.wait_original(status_is("Done"))  # the card is public in an English server: English

    info = await (await hans.click(card, f"encore:info:{job_id_of(card)}")).wait_original()
    assert info.is_ephemeral
    embed = info.embeds[0]
    assert embed["title"] == f"Auftrag {job_id_of(card)}"
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert {"Modell", "Einstellungen", "Seed", "Status", "Zeiten", "Kosten"} <= set(fields)
    assert fields["Status"] == "geliefert"
    assert "s insgesamt" in fields["Zeiten"]
    assert "(geschätzt)" in fields["Kosten"] or "(tatsächlich)" in fields["Kosten"]
    english = await (await alice.click(card, f"encore:info:{job_id_of(card)}")).wait_original()
    english_fields = {f["name"]: f["value"] for f in english.embeds[0]["fields"]}
    assert english.embeds[0]["title"] == f"Job {job_id_of(card)}"
    assert english_fields["Status"] == "delivered"
    assert "Timings" in english_fields

    history = await (await hans.slash("music history")).wait_original()
    assert history.embeds[0]["title"] == "Deine Tracks"
    assert "geliefert" in history.embeds[0]["description"]
    assert labels(history) == ["◀ Neuere", "Ältere ▶"]

    prefer = await (await hans.slash("music prefer", length=12)).wait_message()
    assert prefer.embeds[0]["title"] == "Deine Standardwerte sind gespeichert"
    assert {"Modell", "Länge", "Format", "Variationen"} <= set(field_names(prefer))
    assert "12 s" in [str(f["value"]) for f in prefer.embeds[0]["fields"]]


async def test_a_german_admin_gets_german_settings_and_members_german_notes(
    encore: Encore, sim: DiscordSimulator
) -> None:
    """``/musicadmin settings``, its dialog, its refusal of a bad value and its answer in greta's German; then
    the note that tells hans how the server narrows his own default length, in his."""
    await encore.start()
    greta = sim.user("greta")
    card = await (await greta.slash("musicadmin settings")).wait_original()
    assert card.is_ephemeral
    assert card.embeds[0]["title"] == "Encore auf diesem Server"
    fields = {f["name"]: f["value"] for f in card.embeds[0]["fields"]}
    assert fields["max_duration_s: default"] == "längster Track in Sekunden"

    async def set_value(value: str) -> SimMessage:
        picked = await greta.select(card, f"encore:admin:{sim.guild.id}", ["max_duration_s"])
        form = await picked.wait_modal()
        assert form["title"] == "max_duration_s ändern"
        field = form["components"][0]
        inner = field.get("component") or field["components"][0]
        return await (await greta.submit_modal(picked, {inner["custom_id"]: value})).wait_original()

    assert (await set_value("zehn")).content == "`zehn` ist keine Zahl."
    assert (await set_value("10")).content == "**max_duration_s** ist jetzt 10."

    prefer = await (await sim.user("hans").slash("music prefer", length=12)).wait_message()
    notes = {f["name"]: f["value"] for f in prefer.embeds[0]["fields"]}
    assert (
        notes["Auf diesem Server"]
        == "• Tracks sind auf diesem Server höchstens 10 s lang: Deine werden hier 10 s lang."
    )


async def test_a_plan_card_is_in_the_servers_language_and_its_dialogs_in_the_readers(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs
) -> None:
    await encore.start()
    guild_id = tokyo(sim)
    sam, yuki = sim.user("sam", guild_id=guild_id), sim.user("yuki", guild_id=guild_id)
    handle = await sam.slash("music plan", prompt="a city pop song about rain", length=24)
    card = await handle.wait_original(lambda m: bool(m.embeds) and m.embeds[0]["title"].startswith("プラン: "))
    assert " セクション · 合計 " in card.embeds[0]["description"]
    assert {"セクションを追加", "作曲"} <= set(labels(card))
    plan_id = card.embeds[0]["footer"]["text"].split()[1]

    adding = await sam.click(card, f"encore:planadd:{plan_id}")
    form = await adding.wait_modal()
    assert form["title"] == "Add a section"  # sam reads English

    refused = await (await yuki.select(card, f"encore:planedit:{plan_id}", ["0"])).wait_original()
    assert refused.is_ephemeral
    assert refused.content == "このプランを変更できるのは、作った本人だけです。"
