"""Encore's words in each language: one plain TOML catalogue per Discord locale, in this folder.

``en-US.toml`` is the source: every text Encore shows in Discord that is translated has a key there, and every
other catalogue (``de.toml``, ``es-ES.toml``, ``pt-BR.toml``, ``ja.toml``) has the same keys with the same
``{named}`` placeholders (a test checks it). Tables nest keys: ``[card.fields]`` then ``model = "Model"`` is
the key ``card.fields.model``. A file is named for its Discord locale (``Interaction.locale``,
``Guild.preferred_locale``); a locale without its own file takes the one of its language (``es-419`` reads
``es-ES``), and anything else English.

Nothing here knows Discord: the engine makes its errors with a key and parameters and keeps the English text
for logs and the CLI; the Discord edge renders the key in the reader's language.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

log = logging.getLogger(__name__)

ENGLISH = "en-US"


@dataclass(frozen=True)
class Phrase:
    """A parameter that is itself catalogue text (``access.actions.cancel``): rendered in the same locale."""

    key: str


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for name, value in table.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{key}."))
        elif isinstance(value, str):
            flat[key] = value
        else:
            raise TypeError(f"{key}: a catalogue holds only text, not {type(value).__name__}")
    return flat


@functools.cache
def _files() -> dict[str, bytes]:
    folder = resources.files(__name__)
    return {
        entry.name.removesuffix(".toml"): entry.read_bytes()
        for entry in folder.iterdir()
        if entry.name.endswith(".toml")
    }


@functools.cache
def catalogues() -> dict[str, dict[str, str]]:
    """Every catalogue shipped with Encore, by locale: ``{"de": {"card.fields.model": "Modell", ...}}``."""
    return {locale: _flatten(tomllib.loads(data.decode("utf-8"))) for locale, data in sorted(_files().items())}


def digest() -> str:
    """A hash of every catalogue, so that changed translations count as changed commands (they are synced)."""
    sha = hashlib.sha256()
    for locale, data in sorted(_files().items()):
        sha.update(locale.encode() + b"\0" + data + b"\0")
    return sha.hexdigest()


def placeholders(text: str) -> frozenset[str]:
    """The ``{named}`` placeholders of a text (``{{`` and ``}}`` are literal braces)."""
    return frozenset(field for _, field, _, _ in string.Formatter().parse(text) if field is not None)


def resolve(locale: object) -> str:
    """The catalogue for a Discord locale (a ``discord.Locale`` or its code): its own, else its language's,
    else English."""
    code = str(locale) if locale is not None else ENGLISH
    found = catalogues()
    if code in found:
        return code
    language = code.split("-")[0].lower()
    for name in found:
        if name.split("-")[0].lower() == language:
            return name
    return ENGLISH


def translation(locale: object, key: str) -> str | None:
    """The text of ``key`` in ``locale``'s own catalogue (its language's), unformatted; None when that
    catalogue is English's or lacks the key (the caller keeps its English)."""
    name = resolve(locale)
    if name == ENGLISH:
        return None
    return catalogues()[name].get(key)


def text(locale: object, key: str, **params: Any) -> str:
    """``key`` in ``locale`` (English where that catalogue lacks it), its placeholders filled from ``params``."""
    english = catalogues()[ENGLISH][key]  # a KeyError here is a key the code uses and en-US.toml lacks
    template = translation(locale, key) or english
    values = {
        name: text(locale, value.key) if isinstance(value, Phrase) else localized(locale, value)
        for name, value in params.items()
    }
    try:
        return template.format_map(values)
    except (KeyError, IndexError, ValueError):
        log.warning("the %s text of %s doesn't fit its placeholders; showing English", resolve(locale), key)
        return english.format_map(values)


def english(key: str, **params: Any) -> str:
    """``key`` in English: what logs, the CLI and ``BotError.user_message`` say."""
    return text(ENGLISH, key, **params)


class Said(str):
    """A catalogue text that is its English wherever a ``str`` is (logs, the CLI, a list of notes) and knows
    its key and parameters, so that the Discord edge can say it in the reader's language (:func:`localized`)."""

    key: str
    params: dict[str, Any]

    def __new__(cls, key: str, **params: Any) -> Said:
        said = super().__new__(cls, english(key, **params))
        said.key = key
        said.params = params
        return said


class Stored(str):
    """An English text a job stored (why it failed), as a parameter: said in the reader's language where the
    catalogue has it (:func:`stored_text`)."""


def localized(locale: object, value: Any) -> Any:
    """``value`` in ``locale`` if it is a :class:`Said` (a parameter that is itself catalogue text with its own
    parameters) or :class:`Stored`, else as it is (someone's text, an English-only one, a number)."""
    if isinstance(value, Said):
        return text(locale, value.key, **value.params)
    if isinstance(value, Stored):
        return stored_text(locale, str(value))
    return value


# Where the English texts that jobs store (their failure reasons) are in the catalogue.
_STORED = ("reasons.", "errors.", "refusals.")


@functools.cache
def _stored_texts() -> tuple[dict[str, str], tuple[tuple[re.Pattern[str], str], ...]]:
    """The stored English texts: those without placeholders by text, and a pattern for each of the others
    (its placeholders caught), the most specific (most literal text) first."""
    exact: dict[str, str] = {}
    patterns: list[tuple[int, re.Pattern[str], str]] = []
    for key, english_text in catalogues()[ENGLISH].items():
        if not key.startswith(_STORED):
            continue
        parts = list(string.Formatter().parse(english_text))
        if all(field is None for _, field, _, _ in parts):
            exact.setdefault(english_text, key)
            continue
        regex = "".join(re.escape(literal) + (f"(?P<{field}>.+?)" if field else "") for literal, field, _, _ in parts)
        literal_length = sum(len(literal) for literal, _, _, _ in parts)
        patterns.append((literal_length, re.compile(regex, re.DOTALL), key))
    patterns.sort(key=lambda found: -found[0])
    return exact, tuple((pattern, key) for _, pattern, key in patterns)


def stored_text(locale: object, english_text: str) -> str:
    """An English text a job stored (why it failed) in ``locale``: found among the catalogue's ``[reasons]``
    and ``[errors]`` (its placeholders taken from the stored text; a ``{reason}`` is itself a stored text),
    else as it was stored. Rows stored before a text was in the catalogue read the same way."""
    if resolve(locale) == ENGLISH:
        return english_text
    exact, patterns = _stored_texts()
    if english_text in exact:
        return text(locale, exact[english_text])
    for pattern, key in patterns:
        match = pattern.fullmatch(english_text)
        if match is not None:
            params = match.groupdict()
            if "reason" in params:
                params["reason"] = stored_text(locale, params["reason"])
            return text(locale, key, **params)
    return english_text
