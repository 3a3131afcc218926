"""The simulator's reading of Discord markdown links: what Discord's client turns into a link."""

from __future__ import annotations

import pytest

from tests.fakes.discord.markdown import links, live_links


@pytest.mark.parametrize(
    ("text", "masked", "bare", "suppressed"),
    [
        ("[click](https://evil.example)", [("click", "https://evil.example")], [], []),
        ("see [click](<https://evil.example>) now", [("click", "https://evil.example")], [], []),
        (r"\[click](https://evil.example)", [], ["https://evil.example"], []),  # escaped: shown as typed
        (r"\\[click](https://evil.example)", [("click", "https://evil.example")], [], []),  # an escaped backslash
        ("`[click](https://evil.example)`", [], [], []),  # inside code nothing is parsed
        ("```\n[click](https://evil.example)\n```", [], [], []),
        ("https://example.com/a_b.", [], ["https://example.com/a_b"], []),  # the full stop isn't part of it
        ("<https://example.com>", [], [], ["https://example.com"]),
        ("lo-fi [live] (mix)", [], [], []),
    ],
)
def test_links(text: str, masked: list[tuple[str, str]], bare: list[str], suppressed: list[str]) -> None:
    found = links(text)
    assert (found.masked, found.bare, found.suppressed) == (masked, bare, suppressed)


def test_live_links_in_a_message() -> None:
    embeds = [{"title": "x", "fields": [{"name": "a", "value": "[b](https://c.example)"}], "footer": {"text": "f"}}]
    assert live_links("<https://ok.example> https://unfurls.example", embeds) == [
        "https://unfurls.example",
        "[b](https://c.example)",
    ]
    assert live_links("", [{"description": "https://bare-in-embeds-is-fine.example"}]) == []
