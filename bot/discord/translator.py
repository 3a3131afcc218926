"""Slash commands in each person's language: discord.py's ``app_commands.Translator`` over the catalogues.

At sync, discord.py asks the translator for every command, option and choice name and description in every
Discord locale, and sends what it gets as ``name_localizations`` / ``description_localizations``; Discord
shows each person their own language's. The English is the code's (the catalogue's ``en-US`` holds the same
text, and a test keeps them equal); the keys follow where a text is:

- ``commands.music.generate.name`` / ``.description``: a command or group (its qualified name, dotted)
- ``commands.music.generate.options.prompt.name`` / ``.description``: an option
- ``menus.continue_this_track.name``: a message-menu command
- ``choices.<key>``: a choice made with ``locale_str(name, key=...)`` (model names and formats are names and
  stay as they are)

Interactions still carry the English names, so nothing else changes when a locale is added.
"""

from __future__ import annotations

import re
from typing import Any

from discord import Locale, app_commands
from discord.app_commands import TranslationContextLocation as Where

from bot.locales import translation

_NAME = {Where.command_name: "name", Where.group_name: "name", Where.parameter_name: "name"}
_DESCRIPTION = {Where.command_description, Where.group_description, Where.parameter_description}


def _slug(name: str) -> str:
    """A context menu's name as a key: ``Continue this track`` -> ``continue_this_track``."""
    return re.sub(r"\W+", "_", name.strip().lower()).strip("_")


def catalogue_key(string: app_commands.locale_str, context: app_commands.TranslationContextTypes) -> str | None:
    """The catalogue key of a command's text, from where it is (None: a text that isn't translated)."""
    where, data = context.location, context.data
    part = "name" if where in _NAME else "description" if where in _DESCRIPTION else None
    if isinstance(data, app_commands.ContextMenu):
        return f"menus.{_slug(data.name)}.{part}"
    if isinstance(data, app_commands.Command | app_commands.Group) and part is not None:
        return f"commands.{data.qualified_name.replace(' ', '.')}.{part}"
    if isinstance(data, app_commands.Parameter) and part is not None:
        command = data.command.qualified_name.replace(" ", ".")
        return f"commands.{command}.options.{data.display_name}.{part}"
    if where == Where.choice_name:
        key = string.extras.get("key")
        return f"choices.{key}" if key else None
    return None


class CatalogueTranslator(app_commands.Translator):
    """Names and descriptions of commands, options and choices from ``bot/locales``; None (the English
    default) where a locale has no catalogue or lacks the text."""

    async def translate(
        self, string: app_commands.locale_str, locale: Locale, context: app_commands.TranslationContextTypes
    ) -> str | None:
        key = catalogue_key(string, context)
        return translation(locale, key) if key is not None else None


def choice(name: str, value: Any, key: str) -> app_commands.Choice[Any]:
    """A choice whose name is translated: ``choices.<key>`` in each catalogue."""
    return app_commands.Choice(name=app_commands.locale_str(name, key=key), value=value)


def command_texts(tree: app_commands.CommandTree[Any]) -> dict[str, str]:
    """Every translated text of ``tree``'s commands, by catalogue key, in the code's English: what ``en-US``
    must hold (and every other catalogue translate)."""
    texts: dict[str, str] = {}

    def add(string: app_commands.locale_str | None, context: app_commands.TranslationContextTypes) -> None:
        if string is not None and (key := catalogue_key(string, context)) is not None:
            texts[key] = string.message

    for command in tree.get_commands(type=None):
        if isinstance(command, app_commands.ContextMenu):
            add(app_commands.locale_str(command.name), app_commands.TranslationContext(Where.command_name, command))
            continue
        for item in [command, *(command.walk_commands() if isinstance(command, app_commands.Group) else [])]:
            if isinstance(item, app_commands.Group):
                add(app_commands.locale_str(item.name), app_commands.TranslationContext(Where.group_name, item))
                add(
                    app_commands.locale_str(item.description),
                    app_commands.TranslationContext(Where.group_description, item),
                )
                continue
            add(app_commands.locale_str(item.name), app_commands.TranslationContext(Where.command_name, item))
            add(
                app_commands.locale_str(item.description),
                app_commands.TranslationContext(Where.command_description, item),
            )
            for param in item.parameters:
                add(param.locale_name, app_commands.TranslationContext(Where.parameter_name, param))
                add(param.locale_description, app_commands.TranslationContext(Where.parameter_description, param))
                for option in param.choices:
                    add(option._locale_name, app_commands.TranslationContext(Where.choice_name, option))
    return texts
