"""What ``/music``'s commands share: the choices Discord offers, the advanced ``options`` text read and
completed from the catalog, and the options a command was not given (the person's defaults fill them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from discord import app_commands
from discord.ext import commands

from bot.audio.loop import BAR_CHOICES
from bot.catalog import (
    MUSICGEN_VERSIONS,
    RIFFUSION_SEED_IMAGES,
    TEXT_MODELS,
    ModelSpec,
    ParamType,
    Translate,
    parse_options,
)
from bot.discord.translator import choice
from bot.errors import InvalidRequestError
from bot.jobs.defaults import Default
from bot.locales import ENGLISH
from bot.locales import text as say
from bot.preferences import Preferences, describe

MODEL_CHOICES = [app_commands.Choice(name=spec.display_name, value=spec.key) for spec in TEXT_MODELS]
VERSION_CHOICES = [app_commands.Choice(name=version, value=version) for version in MUSICGEN_VERSIONS]
SEED_IMAGE_CHOICES = [app_commands.Choice(name=name, value=name) for name in RIFFUSION_SEED_IMAGES]
LOOP_CHOICES = [choice(f"{n} bar{'s' if n > 1 else ''}", n, f"loop.{n}") for n in BAR_CHOICES]
# The base of the command mixins the ``Music`` cog is made of: a plain class at run time (``Music`` alone is
# the cog: discord.py collects the commands of every class it inherits), a cog to the type checker (a command's
# callback must take a cog or a group as ``self``).
if TYPE_CHECKING:
    CommandsMixin = commands.Cog
else:
    CommandsMixin = object

OPTIONS_HELP = "Advanced settings as name=value pairs, e.g. temperature=1.2 top_k=200 (see /music models)"


def params_of(options: str | None, **common: Any) -> dict[str, Any]:
    """The advanced ``options`` text plus the common options that were given."""
    params = parse_options(options) if options else {}
    for name, value in common.items():
        if value is not None:
            if name in params:
                raise InvalidRequestError.keyed("refusals.option_twice_both", name=name)
            params[name] = value
    return params


def not_given(**missing: bool) -> frozenset[Default]:
    """The options a command was not given (``model=True``…), which the person's own defaults may fill."""
    return frozenset(Default(name) for name, absent in missing.items() if absent)


def defaults_text(prefs: Preferences, locale: object = ENGLISH) -> str:
    """A person's defaults on one line, for /music usage."""
    if prefs.empty:
        return say(locale, "usage.no_defaults")
    return " · ".join(f"{what}: {value}" for what, value in describe(prefs, locale))


def in_locale(locale: object) -> Translate:
    """The catalog's help words (``models.*``) in ``locale``."""
    return lambda key, params: say(locale, key, **params)


def option_suggestions(spec: ModelSpec, current: str, locale: object = ENGLISH) -> list[app_commands.Choice[str]]:
    """Autocomplete for ``options``: the text so far, completed with a parameter name or one of its values; what
    a parameter takes in ``locale`` (the catalog's help words, as /music models says them)."""
    translate = in_locale(locale)
    head, _, last = current.rpartition(" ")
    prefix = f"{head} " if head else ""
    used = {part.partition("=")[0] for part in head.split()}
    name, has_value, value = last.partition("=")
    choices: list[app_commands.Choice[str]] = []
    if has_value:
        try:
            param = spec.param(name)
        except InvalidRequestError:
            return []
        values = list(param.choices) if param.type == ParamType.CHOICE else []
        if param.type == ParamType.BOOLEAN:
            values = ["true", "false"]
        for candidate in values:
            if candidate.startswith(value):
                text = f"{prefix}{name}={candidate}"
                choices.append(app_commands.Choice(name=text[-100:], value=text[:100]))
        if not choices:
            text = current.strip() or f"{name}="
            label = f"{text} — {param.name}: {param.range_text(translate)}"
            choices.append(app_commands.Choice(name=label[:100], value=text[:100]))
        return choices[:25]
    for param in spec.advanced_params:
        if param.name in used or not param.name.startswith(name):
            continue
        default = "" if param.default is None else f"={param.default}"
        text = f"{prefix}{param.name}{default}"
        label = f"{prefix}{param.name}=… ({param.range_text(translate)})"
        choices.append(app_commands.Choice(name=label[-100:], value=text[:100]))
    return choices[:25]
