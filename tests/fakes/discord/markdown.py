"""How Discord's client reads markdown, for the links a message shows: masked links and bare URLs.

Discord parses message text with simple-markdown: at each position the first rule that matches wins,
in this order for what concerns links: an escape (a backslash before any character that isn't a letter,
digit or space shows that character as is), a code block or inline code (nothing inside is parsed), an
angle-bracket autolink ``<https://…>`` (clickable, never unfurled), a bare URL (clickable; in message
content it unfurls into a link preview), a masked link ``[label](url)`` (shows only the label), else
plain text up to the next character that could start a rule. The regular expressions below are
simple-markdown's and Discord's own rules for these.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

_ESCAPE = re.compile(r"\\([^0-9A-Za-z\s])")
_CODE_BLOCK = re.compile(r"```(?:([a-z0-9_+\-.#]+?)\n)?\n*([^\n][\s\S]*?)\n*```", re.IGNORECASE)
_INLINE_CODE = re.compile(r"(`+)([\s\S]*?[^`])\1(?!`)")
_AUTOLINK = re.compile(r"<([^: >]+:/[^ >]+)>")
_URL = re.compile(r"(https?://[^\s<]+[^<.,:;\"')\]\s])")
_LINK = re.compile(
    r"\[((?:\[[^\]]*\]|[^\[\]]|\](?=[^\[]*\]))*)\]"
    r"\(\s*<?((?:\([^)]*\)|[^\s\\])*?)>?(?:\s+['\"]([\s\S]*?)['\"])?\s*\)"
)
_TEXT = re.compile(r"[\s\S]+?(?=[^0-9A-Za-z\s\u00c0-\uffff]|\n| {2,}\n|\w+:\S|$)")


@dataclass
class Links:
    """The links a piece of text shows once Discord renders it."""

    masked: list[tuple[str, str]] = field(default_factory=list)  # (label shown, where it goes)
    bare: list[str] = field(default_factory=list)  # URLs shown as typed (unfurled in message content)
    suppressed: list[str] = field(default_factory=list)  # <URL>: clickable, never unfurled


def links(text: str) -> Links:
    found = Links()
    position = 0
    while position < len(text):
        for rule in (_ESCAPE, _CODE_BLOCK, _INLINE_CODE):
            match = rule.match(text, position)
            if match:
                position = match.end()
                break
        else:
            if match := _AUTOLINK.match(text, position):
                found.suppressed.append(match[1])
            elif match := _URL.match(text, position):
                found.bare.append(match[1])
            elif match := _LINK.match(text, position):
                found.masked.append((match[1], match[2]))
            else:
                match = _TEXT.match(text, position)
            position = match.end() if match and match.end() > position else position + 1
    return found


def _embed_texts(embed: dict[str, Any]) -> Iterator[str]:
    for key in ("title", "description"):
        if embed.get(key):
            yield str(embed[key])
    for item in embed.get("fields") or []:
        yield str(item.get("name", ""))
        yield str(item.get("value", ""))
    for part in ("footer", "author"):
        text = (embed.get(part) or {}).get("text") or (embed.get(part) or {}).get("name")
        if text:
            yield str(text)


def live_links(content: str, embeds: list[dict[str, Any]]) -> list[str]:
    """What a message would turn into a link its reader didn't see typed: every masked link, and bare URLs
    in its content (they unfurl into previews). Empty for a message that shows people's text inertly."""
    out = [f"[{label}]({url})" for label, url in links(content).masked] + links(content).bare
    for embed in embeds:
        for text in _embed_texts(embed):
            out += [f"[{label}]({url})" for label, url in links(text).masked]
    return out
