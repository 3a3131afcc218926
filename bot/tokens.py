"""Comparing secrets people hand us (URL tokens, path secrets) with ours.

A token taken from a URL path is whatever the client sent: percent-encoded UTF-8 decodes to non-ASCII
text, which :func:`hmac.compare_digest` refuses with a ``TypeError`` when given ``str``. Comparing the
UTF-8 bytes instead makes any such token simply unequal.
"""

from __future__ import annotations

import hmac


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # lone surrogates too: they can't match, and must not raise


def same_secret(given: str, expected: str) -> bool:
    """Whether ``given`` is ``expected``, compared in constant time; never raises for odd text."""
    return hmac.compare_digest(_utf8(given), _utf8(expected))
