"""A person's own defaults (``/music prefer``): model, length, format and variations, used wherever they start a
generation without saying. The same in every server (they are the person's taste, not a server's rule), and
narrowed by each server's rules where they generate: see ``bot.jobs.defaults``.

Checked at the edge against the catalog: a model ``/music generate`` offers, a length that model makes here, a
format it makes, a number of variations Encore makes at once.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from bot.catalog import MAX_BATCH, TEXT_MODELS, ModelSpec, duration_range, get_model
from bot.config import Settings
from bot.errors import InvalidRequestError
from bot.guild_settings import GuildSettings
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


def _kinds(spec: ModelSpec) -> str:
    kinds = formats_of(spec)
    return f"only {kinds[0]}" if len(kinds) == 1 else ", ".join(kinds)


def checked(prefs: Preferences, settings: Settings) -> Preferences:
    """``prefs`` if they make sense together here, else InvalidRequestError saying what to change."""
    spec = None
    if prefs.model is not None:
        if prefs.model not in PREFERRED_MODELS:
            raise InvalidRequestError(
                f"I don't know the model {quoted(prefs.model, 40)}. Choose one of: {', '.join(PREFERRED_MODELS)}."
            )
        spec = get_model(prefs.model)
    if prefs.duration_s is not None:
        if spec is not None and spec.fixed_duration_s is None:
            low, high = duration_range(spec, settings)
            what = f"{spec.display_name} makes {low}-{high} s here"
        else:  # any model's length: it applies to whichever one is used (and a server narrows it there)
            low, high = settings.jobs.min_duration_s, settings.jobs.max_duration_s
            what = f"lengths are {low}-{high} s here"
        if not low <= prefs.duration_s <= high:
            raise InvalidRequestError(
                f"Your default length must fit: {what} (you chose {prefs.duration_s} s). Choose another length, "
                "or another model."
            )
    if prefs.format is not None:
        if prefs.format not in FORMATS:
            raise InvalidRequestError(f"Formats are: {', '.join(FORMATS)}.")
        if spec is not None and prefs.format not in formats_of(spec):
            raise InvalidRequestError(
                f"{spec.display_name} doesn't make {prefs.format} (it makes {_kinds(spec)}). Choose another "
                "format, or another model."
            )
    if prefs.count is not None and not 1 <= prefs.count <= MAX_BATCH:
        raise InvalidRequestError(f"Variations must be between 1 and {MAX_BATCH}.")
    return prefs


def describe(prefs: Preferences) -> list[tuple[str, str]]:
    """(what, value) pairs for a card, one a preference; "—" for those not set."""
    model = get_model(prefs.model).display_name if prefs.model else None
    count = None if prefs.count is None else f"{prefs.count} at once" if prefs.count > 1 else "1 (no variations)"
    values = [
        ("Model", model),
        ("Length", f"{prefs.duration_s} s" if prefs.duration_s is not None else None),
        ("Format", prefs.format),
        ("Variations", count),
    ]
    return [(what, value or "—") for what, value in values]


def server_default(rules: GuildSettings) -> str:
    """The model ``/music generate`` uses here when neither the person nor the command names one."""
    return rules.default_model or "musicgen"


def narrowed_here(prefs: Preferences, rules: GuildSettings, settings: Settings) -> list[str]:
    """How a server's rules narrow ``prefs`` where they generate: said when they set them and on ``/music
    usage``, and applied at generation (``bot.jobs.defaults``)."""
    notes = []
    if prefs.model is not None and rules.allowed_models is not None and prefs.model not in rules.allowed_models:
        fallback = get_model(server_default(rules)).display_name
        notes.append(
            f"{get_model(prefs.model).display_name} isn't enabled on this server: /music generate here uses "
            f"{fallback} unless you name another model."
        )
    if prefs.duration_s is not None and rules.max_duration_s is not None and prefs.duration_s > rules.max_duration_s:
        notes.append(
            f"Tracks are at most {rules.max_duration_s} s on this server: yours will be {rules.max_duration_s} s here."
        )
    daily = rules.user_daily_jobs if rules.user_daily_jobs is not None else settings.limits.user_daily_jobs
    if prefs.count is not None and daily and prefs.count > daily:
        notes.append(
            f"You may make {daily} track(s) a day here: {prefs.count} variations at once would be refused "
            "(give `count` to ask for fewer)."
        )
    return notes
