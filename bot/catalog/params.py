"""Parameters: what kind of value each takes, its range and help line, and how a typed value is parsed."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bot.errors import InvalidRequestError
from bot.locales import english
from bot.text import quoted

# Renders a catalogue key (``models.frame.can``) with its placeholders: in the reader's language at the Discord
# edge; by default the English source (the CLI, logs).
Translate = Callable[[str, Mapping[str, Any]], str]


def in_english(key: str, params: Mapping[str, Any]) -> str:
    return english(key, **params)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


class Capability(StrEnum):
    TEXT = "text to music"
    VOCALS = "songs with vocals and lyrics"
    MELODY = "follows the melody of a clip"
    CONTINUATION = "continues a clip"
    INTERPOLATION = "blends two prompts"
    SPECTROGRAM = "spectrogram image"
    STEMS = "stem separation"


class ParamType(StrEnum):
    STRING = "text"
    INTEGER = "whole number"
    NUMBER = "number"
    BOOLEAN = "true/false"
    CHOICE = "choice"


@dataclass(frozen=True)
class Param:
    """One user-facing parameter. ``name`` is what people type; ``input_key`` what the model receives."""

    name: str
    type: ParamType
    description: str
    default: Any = None  # None: leave it out and let the model decide
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    input_key: str | None = None
    # Shown in the common case (a slash option of its own); the rest are "advanced" (options:).
    common: bool = False
    max_length: int | None = None

    @property
    def key(self) -> str:
        return self.input_key or self.name

    def range_text(self, translate: Translate | None = None) -> str:
        say = translate or in_english
        if self.type == ParamType.CHOICE:
            return say("models.range.one_of", {"choices": ", ".join(self.choices)})
        if self.type == ParamType.BOOLEAN:
            return say("models.range.true_false", {})
        if self.minimum is not None and self.maximum is not None:
            return say("models.range.between", {"low": _fmt(self.minimum), "high": _fmt(self.maximum)})
        if self.minimum is not None:
            return say("models.range.at_least", {"low": _fmt(self.minimum)})
        if self.type == ParamType.STRING and self.max_length:
            return say("models.range.up_to", {"limit": self.max_length})
        return say(f"models.kinds.{self.type.name.lower()}", {})

    def out_of_range(self, value: Any) -> InvalidRequestError:
        """The refusal of ``value``, naming this parameter and what it takes (as :meth:`range_text` says)."""
        given = {"name": self.name, "value": quoted(str(value))}
        if self.type == ParamType.CHOICE:
            return InvalidRequestError.keyed("refusals.param_choice", choices=", ".join(self.choices), **given)
        if self.type == ParamType.BOOLEAN:
            return InvalidRequestError.keyed("refusals.param_boolean", **given)
        if self.minimum is not None and self.maximum is not None:
            low, high = _fmt(self.minimum), _fmt(self.maximum)
            return InvalidRequestError.keyed("refusals.param_between", low=low, high=high, **given)
        if self.minimum is not None:
            return InvalidRequestError.keyed("refusals.param_at_least", low=_fmt(self.minimum), **given)
        if self.type == ParamType.STRING and self.max_length:
            return InvalidRequestError.keyed("refusals.param_up_to", limit=self.max_length, **given)
        return InvalidRequestError.keyed("refusals.param_kind", kind=self.type.value, **given)

    def help_line(self, translate: Translate | None = None, *, description: str | None = None) -> str:
        """``name``: what it does (what it takes; its default). ``description``: this parameter's in the reader's
        language (its own English by default)."""
        say = translate or in_english
        what = self.range_text(translate)
        if self.default is not None:
            what = say("models.with_default", {"range": what, "default": _fmt(self.default)})
        return f"`{self.name}`: {description or self.description} ({what})"

    def coerce(self, value: Any) -> Any:
        """Parse (from text if needed) and check one value; InvalidRequestError names the parameter."""
        bad = self.out_of_range(value)
        if self.type == ParamType.BOOLEAN:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE | _FALSE:
                return text in _TRUE
            raise bad
        if self.type == ParamType.CHOICE:
            text = str(value).strip()
            if text not in self.choices:
                raise bad
            return text
        if self.type == ParamType.STRING:
            text = " ".join(_CONTROL.sub(" ", unicodedata.normalize("NFC", str(value))).split())
            if self.max_length is not None and len(text) > self.max_length:
                raise InvalidRequestError.keyed(
                    "refusals.param_too_long", name=self.name, length=len(text), limit=self.max_length
                )
            return text
        number: float
        if isinstance(value, bool):
            raise bad
        try:
            number = float(value) if not isinstance(value, int | float) else value
        except (TypeError, ValueError):
            raise bad from None
        if not math.isfinite(number):
            raise bad
        if self.type == ParamType.INTEGER:
            if number != int(number):
                raise bad
            number = int(number)
        if (self.minimum is not None and number < self.minimum) or (self.maximum is not None and number > self.maximum):
            raise bad
        return number


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)
