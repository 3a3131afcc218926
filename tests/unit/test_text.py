"""People's text: the normaliser the prompt rules read it through, the rules, and showing it inertly."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.config import SafetySettings
from bot.errors import InvalidRequestError
from bot.jobs.limits import check_texts
from bot.text import inert, normalise, quoted
from tests.disguises import fraktur, full_width, math_bold
from tests.fakes.discord.markdown import links, live_links

# -- the normaliser -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "disguised",
    [
        "forb\u200bidden",  # zero-width space
        "for\u200dbid\u200cden",  # zero-width joiner and non-joiner
        "forbid\u00adden",  # soft hyphen
        "\ufeffforbi\u2060dden",  # byte-order mark, word joiner
        "forbidden\u202e",  # a direction override
        full_width("forbidden"),  # full-width
        math_bold("forbidden"),  # mathematical bold
        fraktur("forbidden"),  # fraktur
        "FORBIDDEN",
        "FoRbIdDeN",
        "fórbíddèn",  # precomposed accents
        "fo\u0301rbi\u0308dden",  # combining accents
        "f\u0336o\u0336r\u0336b\u0336i\u0336d\u0336d\u0336e\u0336n\u0336",  # combining strike-through
        "f\u0489orbidden",  # an enclosing mark
        "fo\u0301\u0327\u0308rbidden",  # stacked marks
    ],
)
def test_disguises_normalise_to_the_plain_word(disguised: str) -> None:
    assert normalise(disguised) == "forbidden"


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("Straße", "strasse"),  # full case folding
        ("İstanbul", "istanbul"),  # a capital with a dot
        (full_width("STRASSE"), "strasse"),
        ("\u210cello \ufb01ne", "hello fine"),  # compatibility forms: black-letter capital, ligature
        ("x²", "x2"),
        ("ΚΑΛΗΜΈΡΑ", "καλημερα"),  # Greek: case and accent
        ("Привет Ёлка", "привет елка"),  # Cyrillic: case and diaeresis
        ("  warm\t\nlo-fi\u3000beat ", "warm lo-fi beat"),  # any white space is one space
    ],
)
def test_case_compatibility_and_space(text: str, plain: str) -> None:
    assert normalise(text) == plain


@pytest.mark.parametrize(
    "text",
    [
        "गर्मी की बारिश",  # Devanagari: vowel signs and virama are spelling
        "ฝนตกหนักในกรุงเทพ",  # Thai: vowels and tone marks are combining marks
        "日本の夏祭り",
        "비 오는 날의 재즈",
        "موسيقى هادئة",
        "שיר ערש",
        "🎹🌧️ lofi",
    ],
)
def test_other_scripts_keep_their_spelling(text: str) -> None:
    assert normalise(text) == " ".join(text.split())


def test_marks_that_spell_a_different_word_stay_apart() -> None:
    # कुम and कम differ by a combining vowel sign: dropping it would make them one word.
    assert normalise("कुम") != normalise("कम")


# -- the rules ------------------------------------------------------------------------------------

RULES = SafetySettings(blocked_words=["forbidden", "ass", "Big Word"], blocked_patterns=[r"\bkill\w*"])


def refused(text: str, rules: SafetySettings = RULES, extra: tuple[str, ...] = ()) -> str | None:
    try:
        check_texts([("prompt", text)], rules, extra)
    except InvalidRequestError as exc:
        return exc.user_message
    return None


@pytest.mark.parametrize(
    "text",
    [
        "a forb\u200bidden tune",
        full_width("forbidden") + " love",
        "FORBIDDEN",
        "fórbíddén fruit",
        "big\u200b  WORD",
        full_width("kill") + "er",
    ],
)
def test_disguised_words_and_patterns_are_refused(text: str) -> None:
    assert refused(text) is not None


@pytest.mark.parametrize(
    "text",
    [
        "classical bass with brass",  # "ass" only inside other words
        "assassin's creed style",
        "forbiddenness",
        "Scunthorpe",
        "big words",
        "गर्मी की बारिश",
        "日本の夏祭り",
        "ฝนตกหนัก",
        "Привет",
        "",
    ],
)
def test_legitimate_text_passes(text: str) -> None:
    assert refused(text) is None


def test_the_servers_own_words_match_the_same_way() -> None:
    # typed full-width by the admin
    assert refused("kiwi smoothie", SafetySettings(), (full_width("KIWI"),)) is not None
    assert refused(full_width("kiwi") + "\u200b smoothie", SafetySettings(), ("kiwi",)) is not None
    assert refused("kiwis", SafetySettings(), ("kiwi",)) is None
    assert refused("anything", SafetySettings(), ("\u200b", " ")) is None  # words of nothing block nothing


def test_words_in_other_scripts() -> None:
    rules = SafetySettings(blocked_words=["कम"])
    assert refused("बहुत कम", rules) is not None
    assert refused("कुम", rules) is None
    assert refused("काम", rules) is None


def test_every_text_is_checked_and_the_refusal_names_it() -> None:
    with pytest.raises(InvalidRequestError, match="That `prompt_b` uses a word this server doesn't allow"):
        check_texts([("prompt", "bells"), ("`prompt_b`", "forbidden beats")], RULES)
    with pytest.raises(InvalidRequestError, match="That lyric line isn't allowed here"):
        check_texts([("section name", "Verse"), ("lyric line", "killing me softly")], RULES)


def test_artist_names_are_normalised_too() -> None:
    rules = SafetySettings(refuse_artist_names=True, artist_names=["Big Star"])
    assert refused("like " + full_width("BIG") + " " + full_width("STAR"), rules) is not None
    assert refused("like big stars", rules) is None


# -- showing text inertly -------------------------------------------------------------------------


def test_a_masked_link_shows_as_typed() -> None:
    shown = inert("[click](https://evil.example) beat")
    assert links(shown).masked == []
    assert links(shown).bare == ["https://evil.example"]  # the real address, in plain sight
    assert live_links(inert("[click](https://evil.example)", previews=False), []) == []


@pytest.mark.parametrize(
    "text",
    [
        "[a](<https://evil.example>)",
        r"\[a](https://evil.example)",
        r"\\[a](https://evil.example)",
        "https://ok.example/[a](https://evil.example)",
        "`x`[a](https://evil.example)`",
        "[a]\n(https://evil.example)",
    ],
)
def test_tricks_around_the_escapes_show_no_link(text: str) -> None:
    assert live_links(inert(text, previews=False), []) == []
    assert links(inert(text)).masked == []


def test_markdown_is_escaped_and_plain_text_untouched() -> None:
    assert inert("Warm lo-fi beat, with rain!") == "Warm lo-fi beat, with rain!"
    assert inert("**bold** __under__ ||spoiler|| ~~gone~~ `code`") == (
        r"\*\*bold\*\* \_\_under\_\_ \|\|spoiler\|\| \~\~gone\~\~ \`code\`"
    )
    assert inert("# big\n> quote\n - item") == "\\# big\n\\> quote\n \\- item"
    assert inert("see https://example.com/a_b", previews=False) == "see <https://example.com/a_b>"
    assert inert("<@123> hi") == "<@123> hi"  # mentions: allowed mentions decide who is pinged


_UNESCAPE = re.compile(r"\\([^0-9A-Za-z\s])")


@given(st.text(max_size=80) | st.text(alphabet="[]()<>\\`*_~|#-> \nhttps:/.ae", max_size=60))
def test_any_text_shows_no_link_and_reads_as_typed(text: str) -> None:
    shown = inert(text)
    assert links(shown).masked == []
    assert _UNESCAPE.sub(r"\1", shown) == text  # Discord shows exactly what was typed


def test_quoted_cannot_break_out_of_its_code_span() -> None:
    assert quoted("x`[a](https://evil.example)`") == "`x'[a](https://evil.example)'`"
    assert links(quoted("x`[a](https://evil.example)`")).masked == []
