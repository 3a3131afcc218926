"""Per-guild settings admins change with /musicadmin: they narrow the config's rules for one server.

Each key has one parser that turns what an admin typed into a value or a clear error; "default"
(or "all"/"none" for lists) removes an override.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from bot.catalog import MODELS
from bot.errors import InvalidRequestError
from bot.locales import Said
from bot.text import quoted

_ID = re.compile(r"^<[#@]&?(\d{15,21})>$|^(\d{15,21})$")


class GuildSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default_model: str | None = None
    allowed_models: list[str] | None = None  # None: every model
    max_duration_s: int | None = None
    user_daily_jobs: int | None = None
    guild_daily_jobs: int | None = None
    guild_daily_budget_usd: float | None = None
    channels: list[int] = []  # empty: every channel
    roles: list[int] = []  # empty: everyone
    blocked_words: list[str] = []
    voice_messages: bool = False  # post every track as a voice message too (they play inline on phones)
    sign_with_c2pa: bool = False  # ask ElevenLabs for C2PA content credentials on MP3 songs and stems
    # Songs ElevenLabs marks explicit, in channels that aren't age-restricted: posted as spoilers, or not at all.
    explicit_songs: Literal["spoiler", "refuse"] = "spoiler"


def _ids(text: str, what: str) -> list[int]:
    out = []
    for part in re.split(r"[,\s]+", text.strip()):
        if not part:
            continue
        match = _ID.match(part)
        if not match:
            raise InvalidRequestError.keyed(f"refusals.settings_not_{what}", value=quoted(part))
        out.append(int(match.group(1) or match.group(2)))
    return out


def _number(text: str, *, low: float, high: float, whole: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidRequestError.keyed("refusals.settings_not_number", value=quoted(text, 20)) from None
    if whole and value != int(value):
        raise InvalidRequestError.keyed("refusals.settings_whole")
    if not low <= value <= high:
        raise InvalidRequestError.keyed("refusals.settings_range", low=f"{low:g}", high=f"{high:g}")
    return int(value) if whole else value


_ON = {"on", "yes", "true", "1"}
_OFF = {"off", "no", "false", "0"}


def _switch(text: str) -> bool:
    word = text.strip().lower()
    if word not in _ON | _OFF:
        raise InvalidRequestError.keyed("refusals.settings_switch", value=quoted(text, 20))
    return word in _ON


def _explicit(text: str) -> str:
    word = text.strip().lower()
    if word not in ("spoiler", "refuse"):
        raise InvalidRequestError.keyed("refusals.settings_explicit", value=quoted(text, 20))
    return word


def _models(text: str) -> list[str]:
    keys = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [key for key in keys if key not in MODELS]
    if unknown or not keys:
        raise InvalidRequestError.keyed("refusals.settings_models", models=", ".join(sorted(MODELS)))
    return keys


def _model(text: str) -> str:
    key = text.strip()
    if key not in MODELS:
        raise InvalidRequestError.keyed("refusals.settings_model", models=", ".join(sorted(MODELS)))
    return key


# key -> (what it is, parser of the typed value); clearing words map to None (the default).
KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "default_model": ("model used when /music generate names none", _model),
    "allowed_models": ("models people may use here, comma-separated", _models),
    "max_duration_s": ("longest track in seconds", lambda t: _number(t, low=1, high=600, whole=True)),
    "user_daily_jobs": ("tracks per person per day", lambda t: _number(t, low=0, high=10_000, whole=True)),
    "guild_daily_jobs": ("tracks for the whole server per day", lambda t: _number(t, low=0, high=100_000, whole=True)),
    "guild_daily_budget_usd": (
        "dollars the server may spend per day",
        lambda t: _number(t, low=0, high=10_000, whole=False),
    ),
    "channels": ("channels Encore works in (mentions or ids)", lambda t: _ids(t, "channel")),
    "roles": ("roles that may use Encore (mentions or ids)", lambda t: _ids(t, "role")),
    "blocked_words": (
        "extra words refused in prompts, comma-separated",
        lambda t: [w.strip() for w in t.split(",") if w.strip()],
    ),
    "voice_messages": ("post every track as a voice message (on/off)", _switch),
    "sign_with_c2pa": ("C2PA credentials on ElevenLabs MP3s (on/off)", _switch),
    "explicit_songs": ("explicit songs outside 18+: spoiler or refuse", _explicit),
}
_CLEAR = {"default", "all", "none", "everyone", "any", "reset", ""}


def changed(current: GuildSettings, key: str, text: str) -> GuildSettings:
    """``current`` with ``key`` set from what an admin typed. Raises InvalidRequestError with a reason."""
    if key not in KEYS:
        raise InvalidRequestError.keyed("refusals.settings_keys", keys=", ".join(KEYS))
    _, parse = KEYS[key]
    if text.strip().lower() in _CLEAR:
        value: Any = GuildSettings.model_fields[key].get_default()
    else:
        value = parse(text)
    return current.model_copy(update={key: value})


def hint(settings: GuildSettings, key: str) -> Said | None:
    """What an admin should know about the value ``key`` now has, if anything."""
    if key == "sign_with_c2pa" and settings.sign_with_c2pa:
        return Said("admin.hint_c2pa")
    if key == "explicit_songs":
        return Said("admin.hint_spoiler" if settings.explicit_songs == "spoiler" else "admin.hint_refuse")
    return None


def shown(settings: GuildSettings, key: str) -> str:
    value = getattr(settings, key)
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None or value == []:
        return "default" if key not in ("channels", "roles", "allowed_models") else "all"
    if key == "channels":
        return ", ".join(f"<#{v}>" for v in value)
    if key == "roles":
        return ", ".join(f"<@&{v}>" for v in value)
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)
