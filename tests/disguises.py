"""Ways people write a word to slip it past word filters, for tests of the prompt rules."""

from __future__ import annotations


def full_width(text: str) -> str:
    """``text`` in full-width letters, as people type to slip past word filters."""
    return "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalpha() else c for c in text)


def math_bold(text: str) -> str:
    """Lowercase ``text`` in mathematical bold letters."""
    return "".join(chr(0x1D41A + ord(c) - ord("a")) for c in text)


def fraktur(text: str) -> str:
    """Lowercase ``text`` in mathematical fraktur letters."""
    return "".join(chr(0x1D51E + ord(c) - ord("a")) for c in text)
