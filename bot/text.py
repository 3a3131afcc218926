"""People's text: how the prompt rules read it, and how to show it on Discord without it acting as markup.

:func:`normalise` is what blocked words and patterns are matched against, so that the same word written
with invisible characters, full-width or mathematical letters, other cases or accents over Latin letters
still matches. :func:`inert` escapes text for Discord markdown so that a masked link (``[click](url)``),
headings, quotes or spoilers in a prompt show as the characters typed.
"""

from __future__ import annotations

import re
import unicodedata

_MARKS = frozenset({"Mn", "Me"})
# Scripts whose letters take combining marks only as accents: marks over them are dropped, as a disguise.
# Elsewhere (Devanagari, Thai, Hebrew, Arabic…) marks are part of the spelling and are kept.
_ACCENTED_SCRIPTS = ("LATIN ", "GREEK ", "CYRILLIC ")


def _takes_accents(char: str) -> bool:
    return char.isascii() or unicodedata.name(char, "").startswith(_ACCENTED_SCRIPTS)


def _strip_accents(text: str) -> str:
    """Drop combining marks that sit on a Latin, Greek or Cyrillic letter (``f\u0336o\u0301`` -> ``fo``)."""
    out: list[str] = []
    drop = False
    for char in text:
        if unicodedata.category(char) in _MARKS:
            if drop:
                continue  # stacked marks go with their letter
        else:
            drop = _takes_accents(char)
        out.append(char)
    return "".join(out)


def normalise(text: str) -> str:
    """``text`` as the prompt rules read it.

    Format characters (category Cf: zero-width spaces and joiners, soft hyphens, direction marks) are
    removed; compatibility forms are folded (NFKC: full-width, superscript, mathematical letters,
    ligatures); case is folded (``casefold``: ß is ss); accents over Latin, Greek and Cyrillic letters are
    dropped; runs of white space become one space. Only for matching: the text people see is unchanged.
    """
    text = "".join(char for char in text if unicodedata.category(char) != "Cf")
    text = _strip_accents(unicodedata.normalize("NFKD", text.casefold()))
    text = unicodedata.normalize("NFKC", text.casefold())
    return " ".join(text.split())


# One pass over the text: a bare URL is left as typed (escapes would break it) and stops at anything that
# could open or close a link or a code span around it; markdown characters are escaped anywhere, and
# quote, heading and list markers at the start of a line.
_TOKENS = re.compile(
    r"(?P<url>https?://[^\s<>()\[\]\\`]+)|(?P<char>[\\*_~`|\[\]])|^(?P<indent>[ \t]*)(?P<marker>[>#-])",
    re.IGNORECASE | re.MULTILINE,
)


def inert(text: str, *, previews: bool = True) -> str:
    """``text`` escaped so Discord shows it as typed: no masked links, formatting, headings or quotes.

    Bare URLs stay readable and clickable (the address is in plain sight). In message content, pass
    ``previews=False`` so they don't unfurl into link previews (``<url>``); embeds never unfurl them.
    Mentions are left alone: messages choose whom they ping with allowed mentions.
    """

    def escaped(match: re.Match[str]) -> str:
        url = match["url"]
        if url is not None:
            wrapped = text[match.start() - 1 : match.start()] == "<" and text[match.end() : match.end() + 1] == ">"
            return url if previews or wrapped else f"<{url}>"
        if match["char"] is not None:
            return "\\" + match["char"]
        return f"{match['indent']}\\{match['marker']}"

    return _TOKENS.sub(escaped, text)


def quoted(text: str, limit: int = 40) -> str:
    """A short piece of someone's text in inline code, for error messages (``you gave `…` ``)."""
    return "`" + text[:limit].replace("`", "'") + "`"


def clock(seconds: float) -> str:
    """A length as minutes and seconds, as a player shows it (``12:05``)."""
    whole = round(seconds)
    return f"{whole // 60}:{whole % 60:02d}"
