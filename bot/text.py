"""People's text: how the prompt rules read it.

:func:`normalise` is what blocked words and patterns are matched against, so that the same word written
with invisible characters, full-width or mathematical letters, other cases or accents over Latin letters
still matches.
"""

from __future__ import annotations

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
