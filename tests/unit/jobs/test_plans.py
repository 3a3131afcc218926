from __future__ import annotations

from bot.catalog.plans import instrumental


def test_instrumental_chunks_keep_headings_and_directions_only() -> None:
    plan = {
        "chunks": [
            {
                "text": "[Verse 1]\nrain on the window\n{soft piano}\nla la {hum}",
                "duration_ms": 5000,
                "positive_styles": [],
            },
            {"text": "coffee gone cold", "duration_ms": 5000, "positive_styles": [], "negative_styles": ["Vocals"]},
            {"song_id": "abc", "range": {"start_ms": 0, "end_ms": 3000}},
        ]
    }
    out = instrumental(plan)
    assert [c.get("text") for c in out["chunks"]] == ["[Verse 1]\n{soft piano}", "", None]
    assert [c.get("negative_styles") for c in out["chunks"]] == [["vocals"], ["Vocals"], None]
    assert plan["chunks"][0]["text"].startswith("[Verse 1]\nrain")  # the original is untouched


def test_instrumental_sections_lose_their_lines() -> None:
    section = {"section_name": "Verse", "positive_local_styles": [], "negative_local_styles": [], "duration_ms": 4000}
    plan = {
        "positive_global_styles": ["lo-fi"],
        "negative_global_styles": ["s"] * 50,
        "sections": [{**section, "lines": ["rain on the window"]}],
    }
    out = instrumental(plan)
    assert out["sections"][0]["lines"] == []
    assert out["negative_global_styles"] == ["s"] * 50  # full: the limit holds
