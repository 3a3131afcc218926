"""A person's own defaults (``/music prefer``): model, length, format and variations, used wherever they start a
generation without saying. The same in every server (they are the person's taste, not a server's rule), and
narrowed by each server's rules where they generate: see ``bot.jobs.defaults``.

Checked at the edge against the catalog: a model ``/music generate`` offers, a length that model makes here, a
format it makes, a number of variations Encore makes at once.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from bot.catalog import MAX_BATCH, TEXT_MODELS, ModelSpec, duration_range, get_model
from bot.config import Settings
from bot.errors import InvalidRequestError
from bot.guild_settings import GuildSettings
from bot.locales import ENGLISH, Said, text
from bot.text import quoted

# What a person may choose as their format: the kinds of file, whatever each model calls them.
FORMATS = ("wav", "mp3", "opus")
PREFERRED_MODELS = tuple(spec.key for spec in TEXT_MODELS)  # the models /music generate offers
OUTPUT_FORMAT = "output_format"  # the catalog's name of a model's format setting


class Preferences(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = None
    duration_s: int | None = None
    format: str | None = None
    count: int | None = None

    @property
    def empty(self) -> bool:
        return self == Preferences()


def format_kind(value: str) -> str | None:
    """The kind of file a model's format setting makes: ``mp3_44100_128`` is mp3, ``pcm_44100`` wav (Encore
    wraps raw PCM), ``opus_48000_128`` opus; ``auto`` is ElevenLabs' mp3. None for a kind Encore doesn't offer."""
    codec = value.split("_", 1)[0]
    kind = {"pcm": "wav", "auto": "mp3"}.get(codec, codec)
    return kind if kind in FORMATS else None


def formats_of(spec: ModelSpec) -> tuple[str, ...]:
    """The kinds of file ``spec`` can make, in the order it lists them."""
    if not any(p.name == OUTPUT_FORMAT for p in spec.params):
        return tuple(kind for kind in spec.output_formats if kind in FORMATS)
    kinds = [format_kind(choice) for choice in spec.param(OUTPUT_FORMAT).choices]
    return tuple(dict.fromkeys(kind for kind in kinds if kind is not None))


def format_setting(spec: ModelSpec, kind: str, configured: str | None = None) -> str | None:
    """The value of ``spec``'s format setting that makes ``kind``: ``configured`` (what this bot sends by
    default) if it is of that kind, else the first of its choices that is. None when ``spec`` has no format
    setting (it makes one kind only) or makes no ``kind``."""
    if not any(p.name == OUTPUT_FORMAT for p in spec.params):
        return None
    if configured is not None and format_kind(configured) == kind:
        return configured
    return next((c for c in spec.param(OUTPUT_FORMAT).choices if format_kind(c) == kind), None)


def checked(prefs: Preferences, settings: Settings) -> Preferences:
    """``prefs`` if they make sense together here, else InvalidRequestError saying what to change."""
    spec = None
    if prefs.model is not None:
        if prefs.model not in PREFERRED_MODELS:
            known = ", ".join(PREFERRED_MODELS)
            raise InvalidRequestError.keyed("refusals.unknown_model", name=quoted(prefs.model, 40), known=known)
        spec = get_model(prefs.model)
    if prefs.duration_s is not None:
        if spec is not None and spec.fixed_duration_s is None:
            low, high = duration_range(spec, settings)
            what = Said("refusals.prefer_model_makes", model=spec.display_name, low=low, high=high)
        else:  # any model's length: it applies to whichever one is used (and a server narrows it there)
            low, high = settings.jobs.min_duration_s, settings.jobs.max_duration_s
            what = Said("refusals.prefer_lengths_are", low=low, high=high)
        if not low <= prefs.duration_s <= high:
            raise InvalidRequestError.keyed("refusals.prefer_length", what=what, seconds=prefs.duration_s)
    if prefs.format is not None:
        if prefs.format not in FORMATS:
            raise InvalidRequestError.keyed("refusals.prefer_formats", formats=", ".join(FORMATS))
        if spec is not None and prefs.format not in formats_of(spec):
            kinds = formats_of(spec)
            made = {"model": spec.display_name, "format": prefs.format}
            if len(kinds) == 1:
                raise InvalidRequestError.keyed("refusals.prefer_format_only", kind=kinds[0], **made)
            raise InvalidRequestError.keyed("refusals.prefer_format", kinds=", ".join(kinds), **made)
    if prefs.count is not None and not 1 <= prefs.count <= MAX_BATCH:
        raise InvalidRequestError.keyed("refusals.prefer_count", max=MAX_BATCH)
    return prefs


def describe(prefs: Preferences, locale: object = ENGLISH) -> list[tuple[str, str]]:
    """(what, value) pairs for a card, one a preference, in ``locale``; "—" for those not set."""

    def words(key: str, **params: Any) -> str:
        return text(locale, f"prefer.{key}", **params)

    model = get_model(prefs.model).display_name if prefs.model else None
    count = None
    if prefs.count is not None:
        count = words("at_once", count=prefs.count) if prefs.count > 1 else words("no_variations")
    values = [
        (words("model"), model),
        (words("length"), words("seconds", seconds=prefs.duration_s) if prefs.duration_s is not None else None),
        (words("format"), prefs.format),
        (words("variations"), count),
    ]
    return [(what, value or "—") for what, value in values]


def server_default(rules: GuildSettings) -> str:
    """The model ``/music generate`` uses here when neither the person nor the command names one."""
    return rules.default_model or "musicgen"


def narrowed_here(prefs: Preferences, rules: GuildSettings, settings: Settings) -> list[Said]:
    """How a server's rules narrow ``prefs`` where they generate: said when they set them and on ``/music
    usage``, and applied at generation (``bot.jobs.defaults``)."""
    notes: list[Said] = []
    if prefs.model is not None and rules.allowed_models is not None and prefs.model not in rules.allowed_models:
        fallback = get_model(server_default(rules)).display_name
        notes.append(Said("notes.prefer_model", model=get_model(prefs.model).display_name, instead=fallback))
    if prefs.duration_s is not None and rules.max_duration_s is not None and prefs.duration_s > rules.max_duration_s:
        notes.append(Said("notes.prefer_length", seconds=rules.max_duration_s))
    daily = rules.user_daily_jobs if rules.user_daily_jobs is not None else settings.limits.user_daily_jobs
    if prefs.count is not None and daily and prefs.count > daily:
        notes.append(Said("notes.prefer_count", daily=daily, count=prefs.count))
    return notes
