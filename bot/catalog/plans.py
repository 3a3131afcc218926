"""Composition plans: a song's sections, styles and lyrics (ElevenLabs Music's format), edited section by
section, composed into songs.

A plan's shape follows the configured model: ``music_v1`` takes styles and sections
(``positive_global_styles``, ``sections[{section_name, positive_local_styles, negative_local_styles,
duration_ms, lines}]``); later models take ``chunks[{text, duration_ms, positive_styles,
negative_styles}]`` where the text may start with ``[Section name]``. :class:`Section` is the common view
people edit; edits are written back in the model's own format.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from bot.errors import InvalidRequestError

MIN_SECTION_MS, MAX_SECTION_MS, MAX_SECTIONS = 3000, 120_000, 30
MAX_STYLES, MAX_LINES, MAX_LINE_CHARS = 50, 30, 200
_HEADING = re.compile(r"^\s*\[([^\]\n]{1,100})\]\s*")
_DIRECTIONS = re.compile(r"(\{[^{}\n]*\}\s*)+")


@dataclass
class Section:
    name: str
    duration_ms: int
    styles: list[str] = field(default_factory=list)
    avoid: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def is_chunked(plan: dict[str, Any]) -> bool:
    return "chunks" in plan


def sections(plan: dict[str, Any]) -> list[Section]:
    if is_chunked(plan):
        out = []
        for index, chunk in enumerate(plan.get("chunks") or []):
            text = str(chunk.get("text") or "")
            heading = _HEADING.match(text)
            name = heading.group(1) if heading else f"Part {index + 1}"
            body = text[heading.end() :] if heading else text
            out.append(
                Section(
                    name=name,
                    duration_ms=int(chunk.get("duration_ms") or MIN_SECTION_MS),
                    styles=list(chunk.get("positive_styles") or []),
                    avoid=list(chunk.get("negative_styles") or []),
                    lines=[line for line in body.splitlines() if line.strip()],
                )
            )
        return out
    return [
        Section(
            name=str(s.get("section_name") or f"Section {i + 1}"),
            duration_ms=int(s.get("duration_ms") or MIN_SECTION_MS),
            styles=list(s.get("positive_local_styles") or []),
            avoid=list(s.get("negative_local_styles") or []),
            lines=list(s.get("lines") or []),
        )
        for i, s in enumerate(plan.get("sections") or [])
    ]


def global_styles(plan: dict[str, Any]) -> tuple[list[str], list[str]]:
    return list(plan.get("positive_global_styles") or []), list(plan.get("negative_global_styles") or [])


def _check(section: Section) -> None:
    if not 1 <= len(section.name) <= 100:
        raise InvalidRequestError.keyed("refusals.plan_section_name")
    if not MIN_SECTION_MS <= section.duration_ms <= MAX_SECTION_MS:
        raise InvalidRequestError.keyed("refusals.plan_section_length")
    if len(section.styles) > MAX_STYLES or len(section.avoid) > MAX_STYLES:
        raise InvalidRequestError.keyed("refusals.plan_styles", max=MAX_STYLES)
    if len(section.lines) > MAX_LINES or any(len(line) > MAX_LINE_CHARS for line in section.lines):
        raise InvalidRequestError.keyed("refusals.plan_lines", max=MAX_LINES, chars=MAX_LINE_CHARS)


def _write(plan: dict[str, Any], items: list[Section]) -> dict[str, Any]:
    new = copy.deepcopy(plan)
    if is_chunked(plan):
        old = plan.get("chunks") or []
        new["chunks"] = [
            {
                **(old[i] if i < len(old) and "song_id" not in old[i] else {}),
                "text": "\n".join([f"[{s.name}]", *s.lines]),
                "duration_ms": s.duration_ms,
                "positive_styles": s.styles,
                "negative_styles": s.avoid,
            }
            for i, s in enumerate(items)
        ]
    else:
        new["sections"] = [
            {
                "section_name": s.name,
                "positive_local_styles": s.styles,
                "negative_local_styles": s.avoid,
                "duration_ms": s.duration_ms,
                "lines": s.lines,
            }
            for s in items
        ]
    return new


def edit_section(plan: dict[str, Any], index: int, section: Section) -> dict[str, Any]:
    items = sections(plan)
    if not 0 <= index < len(items):
        raise InvalidRequestError.keyed("refusals.plan_section_gone")
    _check(section)
    items[index] = section
    return _write(plan, items)


def add_section(plan: dict[str, Any], section: Section) -> dict[str, Any]:
    items = sections(plan)
    if len(items) >= MAX_SECTIONS:
        raise InvalidRequestError.keyed("refusals.plan_max_sections", max=MAX_SECTIONS)
    _check(section)
    return _write(plan, [*items, section])


def remove_section(plan: dict[str, Any], index: int) -> dict[str, Any]:
    items = sections(plan)
    if len(items) <= 1:
        raise InvalidRequestError.keyed("refusals.plan_one_section")
    if not 0 <= index < len(items):
        raise InvalidRequestError.keyed("refusals.plan_section_gone")
    del items[index]
    return _write(plan, items)


def instrumental(plan: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``plan`` with no lyrics and "vocals" among the styles to avoid, in the model's own format.

    ``music_v1`` sections lose their ``lines``; a chunk (later models) keeps only its ``[Section]`` heading and
    lines that are nothing but ``{directions}``, since its lyrics live in its text. A plan can't carry
    ``force_instrumental`` (ElevenLabs takes that only with a prompt), so this is how a plan says it.
    """
    new = copy.deepcopy(plan)
    if is_chunked(new):
        for chunk in new.get("chunks") or []:
            if "text" not in chunk:  # a reference to a stored song's audio
                continue
            kept = [
                line
                for i, line in enumerate(str(chunk["text"]).splitlines())
                if (i == 0 and _HEADING.fullmatch(line.strip())) or _DIRECTIONS.fullmatch(line.strip())
            ]
            chunk["text"] = "\n".join(kept)
            chunk["negative_styles"] = _avoid_vocals(chunk.get("negative_styles"))
    else:
        for section in new.get("sections") or []:
            section["lines"] = []
        new["negative_global_styles"] = _avoid_vocals(new.get("negative_global_styles"))
    return new


def _avoid_vocals(styles: list[str] | None) -> list[str]:
    styles = list(styles or [])
    if len(styles) < MAX_STYLES and not any(style.strip().lower() == "vocals" for style in styles):
        styles.append("vocals")
    return styles


def without_directions(line: str) -> str:
    """A lyric line without its ``{directions}`` (later models' chunks mix them into the text): what is sung."""
    return _DIRECTIONS.sub("", line).strip()


def total_ms(plan: dict[str, Any]) -> int:
    return sum(s.duration_ms for s in sections(plan))


def split_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def texts(plan: dict[str, Any]) -> list[tuple[str, str]]:
    """Every text in a plan, as (what it is, the text): global and section styles, section names, lyrics."""
    liked, avoided = global_styles(plan)
    out = [("style", str(style)) for style in [*liked, *avoided]]
    for section in sections(plan):
        out.append(("section name", section.name))
        out += [("style", str(style)) for style in [*section.styles, *section.avoid]]
        out += [("lyric line", str(line)) for line in section.lines]
    return out
