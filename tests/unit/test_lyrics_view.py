"""How the Lyrics button shows lyrics: bounded pages of inert text (no markdown, no mentions)."""

from __future__ import annotations

import re

from bot.catalog.lyrics import MAX_LINE_CHARS, LyricLine, clean
from cogs.lyrics import MAX_PAGES, PAGE_CHARS, pages, shown, unmentioned

EMBED_DESCRIPTION = 4096


def test_mentions_are_plain_text() -> None:
    text = unmentioned("@everyone @here <@123> <@!123> <@&456> <#789> </music song:1> a@b.c <3")
    assert re.search(r"<@[!&]?\d+>|<#\d+>|</\w|@(everyone|here)\b", text) is None
    assert text.replace("\u200b", "") == "@everyone @here <@123> <@!123> <@&456> <#789> </music song:1> a@b.c <3"


def test_a_short_song_is_one_page_section_by_section() -> None:
    lines = [LyricLine("Verse", "one"), LyricLine("Verse", "two"), LyricLine("Chorus", "**three**")]
    assert pages(lines) == (["**Verse**\none\ntwo\n\n**Chorus**\n\\*\\*three\\*\\*"], False)


def test_the_longest_lyrics_are_bounded() -> None:
    # A plan's most: 30 sections of 30 lines of 200 characters, every one of them escaped twice over.
    line = clean("*_" * 150)
    assert len(line) == MAX_LINE_CHARS
    lines = [LyricLine(f"Section {s} @everyone", line) for s in range(30) for _ in range(30)]
    texts, cut = pages(lines)
    assert cut
    assert len(texts) == MAX_PAGES
    assert all(len(f"||{text}||") <= EMBED_DESCRIPTION for text in texts)
    assert all(len(text) <= PAGE_CHARS for text in texts)
    assert texts[1].startswith("**Section 0 @\u200beveryone** (continued)")
    assert shown(line) in texts[0]
