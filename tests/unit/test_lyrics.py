"""A song's lyrics from its plan, timed by word timestamps, as LRC: the parts the Lyrics button is built on."""

from __future__ import annotations

from typing import Any

import pytest

from bot.catalog.lyrics import MAX_LINE_CHARS, LyricLine, clean, line_times, lrc, lyric_lines, stamp
from bot.providers.base import WordTime
from tests.lrcparse import parse_lrc

V1_PLAN: dict[str, Any] = {
    "positive_global_styles": ["folk"],
    "negative_global_styles": [],
    "sections": [
        {
            "section_name": "Intro",
            "positive_local_styles": [],
            "negative_local_styles": [],
            "duration_ms": 4000,
            "lines": [],
        },
        {
            "section_name": "Verse",
            "positive_local_styles": [],
            "negative_local_styles": [],
            "duration_ms": 8000,
            "lines": ["Rain on the window,", "coffee gone cold"],
        },
        {
            "section_name": "Chorus",
            "positive_local_styles": [],
            "negative_local_styles": [],
            "duration_ms": 8000,
            "lines": ["oh la la", "sing it all night"],
        },
    ],
}
LINES = lyric_lines(V1_PLAN)


def timed(*items: tuple[str, int]) -> list[WordTime]:
    return [WordTime(word, start, start + 300) for word, start in items]


STARTS = [4000, 7000, 12_000, 15_000]  # when V1_PLAN's lines are sung (a verse from 4 s, a chorus from 12 s)


def sung() -> list[WordTime]:
    """Every word of V1_PLAN's lyrics: each line from its start in STARTS, a word each 500 ms."""
    return timed(
        *(
            (word, start + i * 500)
            for line, start in zip(LINES, STARTS, strict=True)
            for i, word in enumerate(line.text.split())
        )
    )


def test_lines_of_both_plan_formats() -> None:
    assert [(line.section, line.text, line.section_ms) for line in LINES] == [
        ("Verse", "Rain on the window,", (4000, 12_000)),
        ("Verse", "coffee gone cold", (4000, 12_000)),
        ("Chorus", "oh la la", (12_000, 20_000)),
        ("Chorus", "sing it all night", (12_000, 20_000)),
    ]
    chunks = {
        "chunks": [
            {"text": "[Intro]\n{soft piano}", "duration_ms": 3000, "positive_styles": []},
            {
                "text": "[Verse 1]\nfirst {whispered} line\n\n{build}\nsecond line",
                "duration_ms": 3000,
                "positive_styles": [],
            },
            {"song_id": "abc", "range": {"start_ms": 0, "end_ms": 3000}},
        ]
    }
    assert lyric_lines(chunks) == [
        LyricLine("Verse 1", "first line", (3000, 6000)),
        LyricLine("Verse 1", "second line", (3000, 6000)),
    ]
    assert lyric_lines(None) == lyric_lines({"sections": []}) == []


def test_hostile_text_is_one_bounded_line() -> None:
    assert clean("a\x00b\x1b[31mc\rd\u2028e\u202ef\u2066g\u200fh") == "a b [31mc d efgh"
    assert clean("  lots \t of\n\nspace  ") == "lots of space"
    long = clean("la " * 1000)
    assert len(long) == MAX_LINE_CHARS
    assert long.endswith("…")


def test_every_line_starts_at_its_first_word() -> None:
    words = sung()
    times = line_times(LINES, words, 20_000)
    assert times == STARTS


def test_words_sung_differently_or_skipped_do_not_throw_the_rest_off() -> None:
    words = timed(
        ("rain", 4000), ("on", 4400), ("a", 4800), ("window", 5200),  # "the" heard as "a"
        ("gone", 7000), ("cold", 7400),  # "coffee" not heard: the line starts at "gone"
        ("yeah", 9000),  # an ad-lib that isn't in the lyrics
        ("sing", 15_000), ("it", 15_300), ("yeah", 15_500), ("all", 15_600), ("night", 15_900),
    )  # fmt: skip
    times = line_times(LINES, words, 20_000)
    assert times == [4000, 7000, 11_000, 15_000]  # "oh la la" not heard at all: between its neighbours


def test_a_line_never_heard_is_not_matched_to_a_later_one_like_it() -> None:
    lines = [
        LyricLine("Verse", "oh la la", (0, 8000)),
        *(LyricLine("Chorus", t, (8000, 16_000)) for t in ("oh la la", "yes")),
    ]
    words = timed(("oh", 12_000), ("la", 12_300), ("la", 12_600), ("yes", 14_000))
    assert line_times(lines, words, 16_000) == [6000, 12_000, 14_000]  # the verse's was never heard


def test_times_out_of_order_or_beyond_the_song_are_ignored() -> None:
    words = sung()
    broken = list(words)
    broken[1] = WordTime("on", 19_000, 19_100)  # far ahead, then back: out of order
    broken[4] = WordTime("coffee", -50, 10)  # before the song
    broken[10] = WordTime("sing", 25_000, 25_500)  # after its end
    times = line_times(LINES, broken, 20_000)
    assert times == [4000, 7500, 12_000, 15_500]  # lines 2 and 4 start at their first word told right


def test_timestamps_that_time_too_few_lines_give_none() -> None:
    assert line_times(LINES, [], 20_000) is None
    assert line_times(LINES, timed(("rain", 4000)), 20_000) is None  # one line of four
    assert line_times(LINES, [WordTime(w.word, 10**9, 10**9 + 1) for w in sung()], 20_000) is None
    assert line_times([], sung(), 20_000) is None


@pytest.mark.parametrize(("ms", "tag"), [(0, "[00:00.00]"), (61_234, "[01:01.23]"), (600_000, "[10:00.00]")])
def test_stamps(ms: int, tag: str) -> None:
    assert stamp(ms) == tag


def test_lrc_reads_back_as_players_read_it() -> None:
    lines = [*LINES, LyricLine("Bridge", "[00:01.00] not a tag [ar:nobody]")]
    times = [4000, 6000, 7500, 9000, 12_340]
    text = lrc(lines, times, title="Rain ]song[", length_ms=20_000)
    parsed = parse_lrc(text)
    assert parsed.tags == {"ti": "Rain )song(", "ar": "Encore", "by": "Encore", "length": "00:20"}
    assert parsed.times == times
    assert parsed.texts[:4] == [line.text for line in LINES]
    assert parsed.texts[4] == "(00:01.00) not a tag (ar:nobody)"
