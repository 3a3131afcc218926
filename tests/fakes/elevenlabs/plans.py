"""Plans, song metadata, lyrics and word timestamps, derived deterministically from a prompt or a plan."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from .errors import Invalid, _err
from .schemas import V1_MODELS

GENRES = (
    "lo-fi",
    "lofi",
    "hip hop",
    "hip-hop",
    "jazz",
    "rock",
    "pop",
    "ambient",
    "electronic",
    "house",
    "techno",
    "classical",
    "orchestral",
    "metal",
    "folk",
    "country",
    "blues",
    "funk",
    "soul",
    "reggae",
    "punk",
    "synthwave",
    "disco",
    "indie",
)
_LOCAL_STYLES = {"Intro": ["sparse", "building"], "Chorus": ["full", "anthemic"], "Outro": ["fading out"]}
# A song is explicit (``is_explicit``) when its prompt or a lyric line has this word: the fake's stand-in for
# whatever ElevenLabs judges by, deterministic so that tests can drive it.
EXPLICIT_MARKER = "explicit"
_EXPLICIT = re.compile(rf"\b{EXPLICIT_MARKER}\b", re.IGNORECASE)


def plan_length_ms(plan: Mapping[str, Any]) -> int:
    """A plan's total duration: its sections, or its chunks (an audio reference lasts its range)."""
    if "sections" in plan:
        return sum(s["duration_ms"] for s in plan["sections"])
    return sum(
        c["duration_ms"] if "duration_ms" in c else c["range"]["end_ms"] - c["range"]["start_ms"]
        for c in plan["chunks"]
    )


def _words(text: str) -> list[str]:
    return re.findall(r"[\w'&-]+", text)


def _phrases(prompt: str) -> list[str]:
    return [p.strip().lower()[:100] for p in re.split(r"[,;\n.]", prompt) if p.strip()][:8]


def _section_names(n: int) -> list[str]:
    if n == 1:
        return ["Main"]
    if n == 2:
        return ["Verse 1", "Chorus"]
    middle = [f"Verse {i // 2 + 1}" if i % 2 == 0 else "Chorus" for i in range(n - 2)]
    return ["Intro", *middle, "Outro"]


def _split_ms(total: int, n: int) -> list[int]:
    base, extra = divmod(total, n)
    return [base + (1 if i < extra else 0) for i in range(n)]


def _lyrics(name: str, topic: str, instrumental: bool) -> list[str]:
    if instrumental or name in ("Intro", "Outro"):
        return []
    if name == "Chorus":
        return [f"oh {topic}", "sing it all night long"]
    return [f"{topic} on my mind", "we keep moving on"]


def derive_plan(prompt: str, length_ms: int, model_id: str, *, instrumental: bool = False) -> dict[str, Any]:
    """The plan the fake "composes" for a prompt: sections of 3..120 s summing to ``length_ms`` exactly."""
    n = max(math.ceil(length_ms / 120_000), min(length_ms // 15_000, 8), 1)
    instrumental = instrumental or "instrumental" in prompt.lower()
    topic = " ".join(_words(prompt)[:3]).lower()[:150] or "music"
    styles = _phrases(prompt)
    negative = ["vocals"] if instrumental else []
    sections = [
        {
            "section_name": name,
            "positive_local_styles": _LOCAL_STYLES.get(name, ["steady groove"]),
            "negative_local_styles": [],
            "duration_ms": ms,
            "lines": _lyrics(name, topic, instrumental),
        }
        for name, ms in zip(_section_names(n), _split_ms(length_ms, n), strict=True)
    ]
    if model_id in V1_MODELS:
        return {"positive_global_styles": styles, "negative_global_styles": negative, "sections": sections}
    chunks = [
        {
            "text": "\n".join([f"[{s['section_name']}]", *(s["lines"] or ["{instrumental}"])]),
            "duration_ms": s["duration_ms"],
            "positive_styles": [*styles, *s["positive_local_styles"]][:50],
            "negative_styles": negative,
        }
        for s in sections
    ]
    return {"chunks": chunks}


def _plan_lines(plan: Mapping[str, Any]) -> list[tuple[int, int, list[str]]]:
    """(start_ms, duration_ms, lyric lines) per section or chunk."""
    out: list[tuple[int, int, list[str]]] = []
    start = 0
    for part in plan.get("sections") or plan.get("chunks") or []:
        if "duration_ms" not in part:  # audio reference chunk
            ms = part["range"]["end_ms"] - part["range"]["start_ms"]
            out.append((start, ms, []))
        elif "lines" in part:
            ms = part["duration_ms"]
            out.append((start, ms, list(part["lines"])))
        else:
            ms = part["duration_ms"]
            text = [re.sub(r"\{[^}]*\}", "", line).strip() for line in part["text"].splitlines()]
            out.append((start, ms, [t for t in text if t and not (t.startswith("[") and t.endswith("]"))]))
        start += ms
    return out


def plan_lyrics(plan: Mapping[str, Any]) -> list[str]:
    """Every lyric line of a plan (a v1 section's ``lines``; a v2 chunk's text without heading and directions)."""
    return [line for _, _, lines in _plan_lines(plan) for line in lines]


def plan_negative_styles(plan: Mapping[str, Any]) -> set[str]:
    """Every negative style of a plan: global and per section (v1), per chunk (v2)."""
    styles = set(plan.get("negative_global_styles") or [])
    for part in plan.get("sections") or plan.get("chunks") or []:
        styles |= set(part.get("negative_local_styles") or part.get("negative_styles") or [])
    return styles


def word_timestamps(plan: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``{word, start_ms, end_ms}`` for every lyric word, spread evenly over its section."""
    out: list[dict[str, Any]] = []
    for start, ms, lines in _plan_lines(plan):
        words = [w for line in lines for w in line.split()]
        slot = ms / len(words) if words else 0
        for i, word in enumerate(words):
            begin = start + round(i * slot)
            out.append({"word": word, "start_ms": begin, "end_ms": begin + max(1, round(slot * 0.8))})
    return out


def _title(words: list[str]) -> str:
    return " ".join(w[:1].upper() + w[1:] for w in words[:4])[:100] or "Untitled"


def is_explicit(prompt: str | None, plan: Mapping[str, Any]) -> bool:
    """Whether the fake marks the song explicit: :data:`EXPLICIT_MARKER` in its prompt or in a lyric line."""
    return any(_EXPLICIT.search(text) for text in [prompt or "", *plan_lyrics(plan)])


def song_metadata(prompt: str | None, plan: Mapping[str, Any]) -> dict[str, Any]:
    """SongMetadata derived from the prompt (or the plan's styles when there is no prompt)."""
    if "sections" in plan:
        styles = list(plan["positive_global_styles"])
    else:
        styles = next((list(c["positive_styles"]) for c in plan["chunks"] if "positive_styles" in c), [])
    source = prompt if prompt is not None else " ".join(styles[:2])
    text = (prompt or " ".join(styles)).lower()
    genres = sorted({g.replace("lofi", "lo-fi").replace("hip-hop", "hip hop") for g in GENRES if g in text})[:3]
    genres = genres or styles[:1]
    vocal = any(lines for _, _, lines in _plan_lines(plan))
    title = _title(_words(source))
    seconds = round(plan_length_ms(plan) / 1000)
    kind = ", ".join(genres) or "original"
    return {
        "title": title,
        "description": f"{title}: a {seconds}-second {kind} track {'with vocals' if vocal else '(instrumental)'}.",
        "genres": genres,
        "languages": ["en"] if vocal else [],
        "is_explicit": is_explicit(prompt, plan),
    }


def fit_plan(plan: dict[str, Any], length_ms: int, loc: list[str | int]) -> dict[str, Any]:
    """A copy of ``plan`` whose durations are rescaled to total ``length_ms`` (audio references kept)."""
    key = "sections" if "sections" in plan else "chunks"
    parts = [dict(p) for p in plan[key]]
    scalable = [p for p in parts if "duration_ms" in p]
    fixed = plan_length_ms({key: [p for p in parts if "duration_ms" not in p]}) if key == "chunks" else 0
    target, current = length_ms - fixed, sum(p["duration_ms"] for p in scalable)
    if not scalable or target <= 0:
        raise Invalid([_err(loc, f"fake: cannot fit this plan into {length_ms} ms")])
    exact = [p["duration_ms"] * target / current for p in scalable]
    new = [math.floor(x) for x in exact]
    order = sorted(range(len(new)), key=lambda i: new[i] - exact[i])
    for i in order[: target - sum(new)]:
        new[i] += 1
    for p, ms in zip(scalable, new, strict=True):
        if not 3000 <= ms <= 120_000:
            raise Invalid([_err(loc, f"fake: fitting the plan into {length_ms} ms gives a {ms} ms section")])
        p["duration_ms"] = ms
    return {**plan, key: parts}
