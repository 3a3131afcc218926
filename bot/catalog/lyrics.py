"""A song's lyrics: read from its composition plan, timed by ElevenLabs' word timestamps, written as synced
lyrics (LRC) that music players show line by line.

The lines are the plan's: a ``music_v1`` section's ``lines``, a later model's chunk text without its
``[heading]`` and ``{directions}``. The plan is people's text (an edited plan) or ElevenLabs' (a prompt's), so
each line is cleaned: control and direction-changing characters go, white space is one space, and a line is
at most :data:`MAX_LINE_CHARS` long.

ElevenLabs times each sung *word* (``with_timestamps``); a line starts when its first word is heard. The
words are matched to the lines in order, by their letters (case, accents and punctuation aside), looking a
little ahead within the line's section (as the plan times it), so a word the singer skipped or the
transcription heard differently doesn't throw the rest off (a line whose first words weren't heard starts
at the first that was).

Times are not trusted: a word said to start before the song or at or after its end is ignored, and so
is one that would go back in time (of words out of order, the longest run in order is kept). A line not
found at all is placed between its neighbours. If fewer than half the lines are found, the song
gets no synced lyrics: the timing would be made up.
"""

from __future__ import annotations

import bisect
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from bot.catalog.plans import sections, without_directions
from bot.text import normalise

MAX_LINE_CHARS = 200  # ElevenLabs' own limit for a plan's line
MAX_LINES = 900  # 30 sections of 30 lines
_LOOK_AHEAD = 64  # words searched past the last line found for the next line's first word
SECTION_SLACK_MS = 3000  # a line may be heard this far outside its section as the plan times it
# Characters that change how text around them reads without being seen: bidirectional embeddings,
# overrides, isolates and marks (a line could otherwise show reversed, or spoof what follows it).
_BIDI = dict.fromkeys([0x200E, 0x200F, 0x061C, *range(0x202A, 0x202F), *range(0x2066, 0x206A)])


class Word(Protocol):
    """One sung word and when it starts (``bot.providers.base.WordTime`` is one)."""

    @property
    def word(self) -> str: ...

    @property
    def start_ms(self) -> int: ...


@dataclass(frozen=True)
class LyricLine:
    section: str  # the section it is sung in (its name, cleaned)
    text: str  # the line, cleaned
    section_ms: tuple[int, int] = (0, 0)  # when the plan says its section starts and ends


def clean(text: str, limit: int = MAX_LINE_CHARS) -> str:
    """``text`` as one line of plain characters: control, separator and direction-changing characters become
    spaces or go, runs of white space are one space, and it is at most ``limit`` characters (``…`` ends a cut)."""
    out = []
    for char in text.translate(_BIDI):
        category = unicodedata.category(char)
        out.append(" " if category in ("Cc", "Zl", "Zp") else char)
    line = " ".join("".join(out).split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def lyric_lines(plan: dict[str, Any] | None) -> list[LyricLine]:
    """Every sung line of ``plan`` in order (none: an instrumental, or no plan)."""
    out: list[LyricLine] = []
    start = 0
    parts = (plan or {}).get("sections") or (plan or {}).get("chunks") or []
    for section, part in zip(sections(plan or {}), parts, strict=False):
        span = _span_ms(part, section.duration_ms)
        name = clean(section.name, 100)
        for line in section.lines:
            text = clean(without_directions(str(line)))
            if text:
                out.append(LyricLine(name, text, (start, start + span)))
        start += span
    return out[:MAX_LINES]


def _span_ms(part: Any, duration_ms: int) -> int:
    """How long a section or chunk lasts: its duration, or an audio reference's range."""
    reference = part.get("range") if isinstance(part, dict) and "duration_ms" not in part else None
    if isinstance(reference, dict):
        try:
            return max(0, int(reference["end_ms"]) - int(reference["start_ms"]))
        except (KeyError, TypeError, ValueError):
            return duration_ms
    return duration_ms


def _key(word: str) -> str:
    """A word as matched: its letters and digits only, case and accents aside."""
    return "".join(char for char in normalise(word) if char.isalnum())


def _keys(text: str) -> list[str]:
    return [key for key in (_key(part) for part in text.split()) if key]


class _Heard(NamedTuple):
    start_ms: int
    key: str


def _heard(words: Sequence[Word], length_ms: int) -> list[_Heard]:
    """The words worth trusting, in order: within the song, and the longest run whose times never go back."""
    inside = [_Heard(int(w.start_ms), key) for w in words if 0 <= w.start_ms < length_ms and (key := _key(str(w.word)))]
    # Longest non-decreasing subsequence by start time (patience sorting), keeping the words' order.
    tails: list[int] = []  # tails[n]: start of the smallest last word of a run of n + 1
    tail_at: list[int] = []  # ...and that word's index
    before: list[int] = [-1] * len(inside)
    for index, heard in enumerate(inside):
        n = bisect.bisect_right(tails, heard.start_ms)
        before[index] = tail_at[n - 1] if n else -1
        if n == len(tails):
            tails.append(heard.start_ms)
            tail_at.append(index)
        else:
            tails[n], tail_at[n] = heard.start_ms, index
    kept: list[_Heard] = []
    index = tail_at[-1] if tail_at else -1
    while index >= 0:
        kept.append(inside[index])
        index = before[index]
    return kept[::-1]


def _find(heard: list[_Heard], keys: list[str], cursor: int, window: tuple[int, int]) -> tuple[int, int] | None:
    """Where a line of ``keys`` starts among the words from ``cursor``, heard within ``window`` (ms): the first
    word that is one of the line's first three and is followed by at least half of the rest of the line as
    written. Returns (that word's index, the index after the line's last word heard), or None."""
    low, high = window
    for index in range(cursor, min(len(heard), cursor + _LOOK_AHEAD)):
        if heard[index].start_ms < low:
            continue
        if heard[index].start_ms >= high:
            return None
        for missed in range(min(3, len(keys))):
            rest = keys[missed:]
            if heard[index].key != rest[0]:
                continue
            agree, end = _agreement(heard, index, rest)
            if agree >= max(1, (len(rest) + 1) // 2):
                return index, end
    return None


def _agreement(heard: list[_Heard], index: int, keys: list[str]) -> tuple[int, int]:
    """How many of ``keys`` are heard in order from ``index`` (a word or two heard in between, an ad-lib, or
    missing, not heard or heard differently, aside), and the index after the last of them."""
    agree, at = 0, index
    for key in keys:
        for look in range(at, min(len(heard), at + 3)):
            if heard[look].key == key:
                agree, at = agree + 1, look + 1
                break
    return agree, at


def line_times(lines: Sequence[LyricLine], words: Sequence[Word], length_ms: int) -> list[int] | None:
    """When each of ``lines`` starts, in ms (never decreasing, within the song); None when the words don't
    time at least half of them (or there are none).

    A line is looked for only among words heard in its section (as the plan times it, give or take
    :data:`SECTION_SLACK_MS`), so a line that was never heard can't be matched to a later line like it."""
    heard = _heard(words, length_ms)
    found: list[int | None] = []
    cursor = 0
    for line in lines:
        keys = _keys(line.text)
        low, high = line.section_ms
        window = (low - SECTION_SLACK_MS, high + SECTION_SLACK_MS) if high > low else (0, length_ms)
        match = _find(heard, keys, cursor, window) if keys else None
        if match is None:
            found.append(None)
            continue
        index, cursor = match
        found.append(heard[index].start_ms)
    if not lines or 2 * sum(t is not None for t in found) < len(lines):
        return None
    return _filled(found, length_ms)


def _filled(found: list[int | None], length_ms: int) -> list[int]:
    """``found`` with each run of unknown times spread evenly between the known times around it (the song's
    start and end at the edges)."""
    out: list[int] = []
    index = 0
    while index < len(found):
        known = found[index]
        if known is not None:
            out.append(known)
            index += 1
            continue
        run_end = index
        while run_end < len(found) and found[run_end] is None:
            run_end += 1
        low = out[-1] if out else 0
        following = found[run_end] if run_end < len(found) else None
        high = following if following is not None else length_ms
        count = run_end - index
        out += [low + (high - low) * (step + 1) // (count + 1) for step in range(count)]
        index = run_end
    return out


def stamp(ms: int) -> str:
    """``[mm:ss.xx]``, an LRC time tag."""
    ms = max(0, ms)
    return f"[{ms // 60_000:02d}:{ms // 1000 % 60:02d}.{ms % 1000 // 10:02d}]"


def _lrc_text(text: str) -> str:
    """Text that can't read as a tag: square brackets (a tag's, or a time's) become round ones."""
    return text.replace("[", "(").replace("]", ")")


def lrc(lines: Sequence[LyricLine], times: Sequence[int], *, title: str, length_ms: int) -> str:
    """Synced lyrics: a header (title, artist, length), then each line after its time tag."""
    seconds = max(0, length_ms) // 1000
    head = [
        f"[ti:{_lrc_text(clean(title, 100))}]",
        "[ar:Encore]",
        "[by:Encore]",
        f"[length:{seconds // 60:02d}:{seconds % 60:02d}]",
    ]
    body = [f"{stamp(ms)}{_lrc_text(line.text)}" for line, ms in zip(lines, times, strict=True)]
    return "\n".join([*head, *body]) + "\n"
