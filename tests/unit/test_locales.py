"""The catalogues (``bot/locales/*.toml``): every locale says everything English says, with the same
placeholders, nothing English doesn't, and within Discord's limits for command names and descriptions.

English (``en-US.toml``) is the source: texts the code shows go through a key there (``say(locale, "key")``,
``SomeError.keyed("key")``, ``default_key``), so a string added in English and not translated fails here.
The command texts in ``en-US.toml`` are checked against the real command tree in
``tests/e2e/test_locales.py``.
"""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from bot import locales
from bot.guild_settings import KEYS
from bot.jobs.access import Action
from bot.jobs.phase import Phase
from bot.records import JobStatus
from cogs.variations import NO_TRACK_ACTIONS
from cogs.views import RESULT_ACTIONS
from tests.fakes.discord.commands import discord_locales, localized_name_ok

ROOT = Path(__file__).resolve().parents[2]
ENGLISH = locales.catalogues()[locales.ENGLISH]
OTHERS = sorted(name for name in locales.catalogues() if name != locales.ENGLISH)


def test_english_and_at_least_four_more_languages_are_shipped() -> None:
    assert {"en-US", "de", "es-ES", "pt-BR", "ja"} <= set(locales.catalogues())
    # each file is named for a locale Discord sends (Interaction.locale, Guild.preferred_locale)
    assert set(locales.catalogues()) <= discord_locales()


@pytest.mark.parametrize("locale", OTHERS)
def test_every_string_is_translated_and_nothing_else(locale: str) -> None:
    catalogue = locales.catalogues()[locale]
    missing = sorted(set(ENGLISH) - set(catalogue))
    extra = sorted(set(catalogue) - set(ENGLISH))
    assert missing == [], f"{locale}.toml lacks {missing}"
    assert extra == [], f"{locale}.toml has keys en-US.toml doesn't: {extra}"
    empty = sorted(key for key, text in catalogue.items() if not text.strip())
    assert empty == []


@pytest.mark.parametrize("locale", OTHERS)
def test_placeholders_are_the_same_as_in_english(locale: str) -> None:
    catalogue = locales.catalogues()[locale]
    differ = {
        key: (sorted(locales.placeholders(ENGLISH[key])), sorted(locales.placeholders(text)))
        for key, text in catalogue.items()
        if key in ENGLISH and locales.placeholders(text) != locales.placeholders(ENGLISH[key])
    }
    assert differ == {}, f"{locale}.toml: (English, {locale}) placeholders differ: {differ}"


@pytest.mark.parametrize("locale", sorted(locales.catalogues()))
def test_placeholders_are_plain_names(locale: str) -> None:
    """``{seconds}``, never ``{0}``, ``{x.attr}``, ``{x[0]}`` or a format spec: a translation reads nothing but
    the value it is given; and never ``{key}`` or ``{locale}``, the names of ``text()``'s own arguments."""
    bad = {}
    for key, text in locales.catalogues()[locale].items():
        for _, name, spec, conversion in string.Formatter().parse(text):
            if name is not None and (not name.isidentifier() or spec or conversion or name in ("key", "locale")):
                bad[key] = name
    assert bad == {}


@pytest.mark.parametrize("locale", OTHERS)
def test_command_texts_are_within_discords_limits(locale: str) -> None:
    """Slash command and option names: 1-32 characters, lowercase, Discord's name pattern; menu names 1-32;
    descriptions 1-100; choices 1-100; and no two options (or subcommands) of one command share a name."""
    catalogue = locales.catalogues()[locale]
    problems = []
    siblings: dict[str, list[str]] = {}
    for key, text in catalogue.items():
        if key.startswith("commands.") and key.endswith(".name"):
            if not localized_name_ok(text):
                problems.append((key, text))
            parent = key.removesuffix(".name").rpartition(".")[0]
            siblings.setdefault(parent.removesuffix(".options"), []).append(text)
        elif key.startswith("menus.") and not 1 <= len(text) <= 32:
            problems.append((key, text))
        elif (key.endswith(".description") or key.startswith("choices.")) and not 1 <= len(text) <= 100:
            problems.append((key, len(text)))
    assert problems == []
    clashes = {parent: names for parent, names in siblings.items() if len(names) != len(set(names))}
    assert clashes == {}


def test_the_name_rule_is_discords() -> None:
    assert localized_name_ok("erzeugen")
    assert localized_name_ok("länge")
    assert localized_name_ok("生成")
    assert localized_name_ok("モデルバージョン")
    assert localized_name_ok("गाना")  # Devanagari with a vowel sign (a mark, allowed by \p{sc=Deva})
    assert not localized_name_ok("Erzeugen")  # uppercase
    assert not localized_name_ok("neu laden")  # a space
    assert not localized_name_ok("x" * 33)
    assert not localized_name_ok("")
    assert not localized_name_ok("prompt!")


_PLAN_DIALOG = ("edit", "add", "name", "name_example", "seconds", "styles", "avoid", "lyrics")
# Dialogs' titles and their fields' labels: Discord takes at most 45 characters.
_LABELS = [
    *(f"dialogs.{name}" for name in ("continue_title", "melody_title", "prompt", "prompt_optional")),
    *(f"dialogs.{name}" for name in ("seconds_to_add", "length")),
    *(f"plans.dialog.{name}" for name in _PLAN_DIALOG if name != "name_example"),
]
_NO_TRACK_STATES = ("unfinished", "canceled", "failed", "failed_why")
# Keys the code builds from a table's name (``words("title")`` says ``info.title``), by table.
_BUILT = {
    "dialogs": (
        "continue_title",
        "melody_title",
        "prompt",
        "prompt_optional",
        "continue_example",
        "melody_example",
        "seconds_to_add",
        "length",
        "length_placeholder",
        "continuing",
        "preparing",
    ),
    "info": (
        "title",
        "your_clip",
        "settings",
        "defaults",
        "timings",
        "waited",
        "generated",
        "in_all",
        "cost",
        "cost_actual",
        "cost_estimated",
        "lineage",
        "lineage_of",
        "lineage_clip",
    ),
    "history": ("title", "nothing_yet", "no_more", "variations_of", "repost", "footer", "newer", "older"),
    "admin": ("title", "footer", "pick", "change", "now"),
    "plans": (
        *("title", "summary", "styles", "avoid", "section_avoid", "instrumental", "more_lines", "footer"),
        *("pick_edit", "pick_remove", "add", "compose"),
    ),
    "plans.dialog": _PLAN_DIALOG,
    "prefer": ("model", "length", "format", "variations", "seconds", "at_once", "no_variations"),
}
_USED = re.compile(r"""(?:\bsay\([^,()]+,\s*|\.keyed\(\s*|default_key = |Error\(key=|\bSaid\()"([a-z_.0-9]+)\"""")


def test_every_key_the_code_uses_is_in_english() -> None:
    """Literal keys in the code (``say(locale, "key")``, ``.keyed("key")``, ``default_key = "key"``,
    ``SomeError(key="key", ...)``, ``Said("key", ...)``) and the families built from names (phases, buttons,
    access actions, statuses, the tables whose keys are made from a name) all exist in ``en-US.toml``."""
    used = set()
    for path in [*(ROOT / "bot").rglob("*.py"), *(ROOT / "cogs").rglob("*.py")]:
        used |= set(_USED.findall(path.read_text(encoding="utf-8")))
    used |= {f"card.phase.{phase.name.lower()}" for phase in Phase}
    used |= {f"buttons.{action}" for action in RESULT_ACTIONS}
    used |= {f"access.actions.{action.value}" for action in Action}
    used |= {f"info.status.{status.value}" for status in JobStatus}
    used |= {f"admin.settings.{key}" for key in KEYS}
    used |= {f"refusals.settings_not_{what}" for what in ("channel", "role")}
    used |= {f"refusals.already_state.{status}" for status in ("succeeded", "delivered", "failed", "canceled")}
    used |= {f"variations.{state}.{action}" for state in _NO_TRACK_STATES for action in NO_TRACK_ACTIONS}
    used |= {f"{part}.{name}" for part in _BUILT for name in _BUILT[part]}
    assert len(used) > 60  # the scan found the code's keys
    assert sorted(used - set(ENGLISH)) == []


def test_an_unknown_locale_falls_back_to_english_and_a_language_to_its_own() -> None:
    assert locales.resolve("fr") == "en-US"
    assert locales.resolve(None) == "en-US"
    assert locales.resolve("en-GB") == "en-US"
    assert locales.resolve("es-419") == "es-ES"  # Latin American Spanish reads Spain's
    assert locales.text("fr", "replies.deleted") == "Deleted."
    assert (
        locales.text("de", "limits.cooldown", seconds=3)
        == "Bitte warte noch 3 Sekunde(n) bis zu deiner nächsten Anfrage."
    )
    assert locales.text("ja", "card.phase.queued") == "待機中"


def test_a_broken_translation_shows_english_rather_than_failing() -> None:
    """A catalogue edited by hand with a placeholder typo must not break a reply (the tests above catch it)."""
    locales.catalogues()["de"]["replies.deleted"] = "Gelöscht {oops}."
    try:
        assert locales.text("de", "replies.deleted") == "Deleted."
    finally:
        locales.catalogues.cache_clear()


def test_stored_failure_reasons_are_shown_in_the_readers_language() -> None:
    """Jobs store why they failed in English (old rows too): a card finds the text in the catalogue, with its
    placeholders, and shows it translated; a text it doesn't know stays as it was stored."""
    timed_out = "The job took too long and was stopped. Please try again."
    assert locales.stored_text("en-US", timed_out) == timed_out
    assert locales.stored_text("de", timed_out) == locales.text("de", "reasons.timed_out")
    assert locales.stored_text("de", timed_out) != timed_out
    # an error's default message, stored from ``exc.user_message``
    assert locales.stored_text("ja", locales.english("errors.provider")) == locales.text("ja", "errors.provider")
    # placeholders are taken from the stored text; a {reason} is itself a stored text
    assert locales.stored_text("pt-BR", "Stable Audio isn't set up on this bot.") == (
        "Stable Audio não está configurado neste bot."
    )
    lost = locales.english("errors.prediction_lost") + " Please try again."
    assert locales.stored_text("es-ES", lost) == "{} Inténtalo de nuevo.".format(
        locales.text("es-ES", "errors.prediction_lost")
    )
    refused = "ElevenLabs refused those settings (music_length_ms, prompt)."
    assert locales.stored_text("ja", refused) == "ElevenLabs がその設定を拒否しました (music_length_ms, prompt)。"
    # something the catalogue doesn't have (a provider's own words) is shown as it is
    assert locales.stored_text("de", "Something new went wrong.") == "Something new went wrong."


def test_server_settings_say_in_english_what_the_code_says() -> None:
    """``/musicadmin settings`` shows each setting's ``admin.settings.<key>``: its English is the code's, and no
    translation of it is longer than a dialog's label shows (45 characters) unless English is."""
    assert {key: ENGLISH[f"admin.settings.{key}"] for key in KEYS} == {key: what for key, (what, _) in KEYS.items()}
    for locale in OTHERS:
        catalogue = locales.catalogues()[locale]
        long = [key for key in KEYS if len(catalogue[f"admin.settings.{key}"]) > max(45, len(KEYS[key][0]))]
        assert long == [], f"{locale}: {long}"


@pytest.mark.parametrize("locale", sorted(locales.catalogues()))
def test_dialog_titles_and_labels_fit_discord(locale: str) -> None:
    catalogue = locales.catalogues()[locale]
    long = {key: len(catalogue[key]) for key in _LABELS if len(locales.text(locale, key, max=20)) > 45}
    assert long == {}
